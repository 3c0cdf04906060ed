import sys

from infra.stack import main

sys.exit(main())
