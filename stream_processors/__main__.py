from stream_processors.cli import main

main()
