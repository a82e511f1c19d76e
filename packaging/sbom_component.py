"""Name the Debian package as the subject of a CycloneDX SBOM made by `cyclonedx-py environment`.

cyclonedx-py describes the virtual environment's Python distributions; what a hospital
receives is the package `voice-kiosk_<version>_<arch>.deb`. This adds it as
`metadata.component` (the SBOM's subject), depending on the kiosk's own Python distribution:

    python3 packaging/sbom_component.py SBOM.json VERSION ARCH
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def add_package(sbom: dict, version: str, arch: str) -> dict:
    """The SBOM with the Debian package as its subject (idempotent)."""
    purl = f"pkg:deb/voice-kiosk@{version}?arch={arch}"
    kiosk = next(c for c in sbom["components"] if c["name"] == "voice-kiosk")
    sbom["metadata"]["component"] = {
        "type": "application",
        "bom-ref": purl,
        "name": "voice-kiosk",
        "version": version,
        "purl": purl,
        "description": "voice-kiosk Debian package: the kiosk in its own virtual environment "
                       "(/opt/voice-kiosk/venv)",
        "licenses": kiosk.get("licenses", []),
    }
    deps = [d for d in sbom.get("dependencies", []) if d.get("ref") != purl]
    sbom["dependencies"] = [{"ref": purl, "dependsOn": [kiosk["bom-ref"]]}, *deps]
    return sbom


def main(argv: list[str]) -> int:
    if len(argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    path = Path(argv[1])
    sbom = add_package(json.loads(path.read_text()), argv[2], argv[3])
    path.write_text(json.dumps(sbom, indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
