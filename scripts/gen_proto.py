"""Regenerate the Python stubs of `proto/dark_tower/internal.proto` (and `signaling.proto`).

Usage: `python scripts/gen_proto.py [OUT_DIR]` (default: `src`). The proto is mapped into the
package as `darktower/wire/dark_tower/internal.proto`, so the generated gRPC module imports its
messages as `darktower.wire.dark_tower.internal_pb2` without any rewriting. The output is
deterministic for a given grpcio-tools / mypy-protobuf version (both pinned in pyproject.toml);
`tests/test_wire_stubs.py` regenerates into a temporary directory and compares.
"""

from __future__ import annotations

import sys
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
# mypy-protobuf's plugins live beside the interpreter running this script (the venv's bin/).
BIN = Path(sys.executable).parent
PROTO_FILES = [
    "darktower/wire/dark_tower/internal.proto",
    "darktower/wire/dark_tower/signaling.proto",
]
GENERATED = [
    "darktower/wire/dark_tower/internal_pb2.py",
    "darktower/wire/dark_tower/internal_pb2.pyi",
    "darktower/wire/dark_tower/internal_pb2_grpc.py",
    "darktower/wire/dark_tower/internal_pb2_grpc.pyi",
    "darktower/wire/dark_tower/signaling_pb2.py",
    "darktower/wire/dark_tower/signaling_pb2.pyi",
    "darktower/wire/dark_tower/signaling_pb2_grpc.py",
    "darktower/wire/dark_tower/signaling_pb2_grpc.pyi",
]


def generate(out_dir: Path) -> None:
    """Write the generated files under `out_dir` (which must exist)."""
    (out_dir / "darktower/wire/dark_tower").mkdir(parents=True, exist_ok=True)
    include = str(Path(protoc.__file__).parent / "_proto")
    args = [
        "grpc_tools.protoc",
        f"-Idarktower/wire={PROTO_DIR}",
        f"-I{include}",
        f"--plugin=protoc-gen-mypy={BIN / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={BIN / 'protoc-gen-mypy_grpc'}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        f"--mypy_out={out_dir}",
        f"--mypy_grpc_out={out_dir}",
        *PROTO_FILES,
    ]
    code = protoc.main(args)
    if code != 0:
        raise SystemExit(f"protoc failed with exit code {code}")


if __name__ == "__main__":
    generate(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "src")
