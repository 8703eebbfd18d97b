#!/usr/bin/env python3
"""Writes the filter as an OCI image layout directory that Istio's `WasmPlugin` pulls.

Usage: oci_layout.py WASM OUT_DIR [--tag TAG]     (`make dist`: dist/jwt_filter.wasm dist/oci)
       oci_layout.py --check WASM OUT_DIR [--tag TAG]

The image is the Wasm image specification's *compat* variant, the one Istio tries first
(istio/istio pkg/wasm/imagefetcher.go: Docker manifest, then the compat variant, then the
"oci" variant with custom media types):

- an OCI image manifest (`application/vnd.oci.image.manifest.v1+json`) annotated
  `module.wasm.image/variant: compat`;
- one layer, `application/vnd.oci.image.layer.v1.tar+gzip`, a tar holding `plugin.wasm`
  (the module, byte for byte);
- an ordinary OCI image config (`application/vnd.oci.image.config.v1+json`, architecture
  `wasm`, os `wasip1`) whose `rootfs.diff_ids` names the uncompressed tar.

Every registry and client handles that as a plain image. The layout is reproducible: the same
module gives the same bytes (tar entries with fixed owner, mode and time, gzip without a name
or time, JSON with sorted keys, no creation date). `--check` rebuilds in memory and compares
with OUT_DIR, then reads the module back out of the layout as Istio does; exit 1 on any
difference. Python standard library only.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import sys
import tarfile
from pathlib import Path

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
PLUGIN = "plugin.wasm"
MTIME = 0  # 1970-01-01: no build time in the image


def _json(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _layer_tar(wasm: bytes) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo(PLUGIN)
        info.size = len(wasm)
        info.mode = 0o644
        info.mtime = MTIME
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        tar.addfile(info, io.BytesIO(wasm))
    return buf.getvalue()


def _gzip(data: bytes) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=9, mtime=0) as gz:
        gz.write(data)
    return buf.getvalue()


def build(wasm: bytes, tag: str) -> dict[str, bytes]:
    """The layout as relative path -> bytes."""
    tar = _layer_tar(wasm)
    layer = _gzip(tar)
    config = _json({
        "architecture": "wasm",
        "os": "wasip1",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [_digest(tar)]},
    })
    manifest = _json({
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": {"mediaType": CONFIG, "digest": _digest(config), "size": len(config)},
        "layers": [{"mediaType": LAYER, "digest": _digest(layer), "size": len(layer)}],
        "annotations": {
            "module.wasm.image/variant": "compat",
            "org.opencontainers.image.title": "jwt_filter",
            "org.opencontainers.image.version": tag,
        },
    })
    index = _json({
        "schemaVersion": 2,
        "mediaType": INDEX,
        "manifests": [{
            "mediaType": MANIFEST, "digest": _digest(manifest), "size": len(manifest),
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }],
    })
    files = {"oci-layout": _json({"imageLayoutVersion": "1.0.0"}), "index.json": index}
    for blob in (config, layer, manifest):
        files["blobs/sha256/" + hashlib.sha256(blob).hexdigest()] = blob
    return files


def read_plugin(layout: Path, tag: str) -> tuple[bytes, str]:
    """Reads the module out of an OCI layout the way Istio's image fetcher reads the compat
    variant (the manifest named `tag`; its last layer must be an OCI tar+gzip; the entry whose
    base name is plugin.wasm), checking every digest and size on the way; (module, manifest
    digest)."""

    def blob(desc: dict) -> bytes:
        algo, _, hexd = desc["digest"].partition(":")
        if algo != "sha256":
            raise ValueError(f"unsupported digest {desc['digest']}")
        data = (layout / "blobs" / "sha256" / hexd).read_bytes()
        if hashlib.sha256(data).hexdigest() != hexd or len(data) != desc["size"]:
            raise ValueError(f"blob {desc['digest']}: digest or size does not match")
        return data

    if json.loads((layout / "oci-layout").read_text()).get("imageLayoutVersion") != "1.0.0":
        raise ValueError("oci-layout: imageLayoutVersion is not 1.0.0")
    index = json.loads((layout / "index.json").read_text())
    named = [m for m in index["manifests"]
             if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag]
    if len(named) != 1:
        raise ValueError(f"index.json: {len(named)} manifests named {tag!r}")
    if named[0]["mediaType"] != MANIFEST:
        raise ValueError(f"manifest media type {named[0]['mediaType']}")
    manifest = json.loads(blob(named[0]))
    if manifest.get("mediaType") != MANIFEST or manifest.get("schemaVersion") != 2:
        raise ValueError("not an OCI image manifest")
    config = json.loads(blob(manifest["config"]))
    layers = manifest["layers"]
    if not layers:
        raise ValueError("number of layers must be greater than zero")
    last = layers[-1]
    if last["mediaType"] != LAYER:
        raise ValueError(f"invalid media type {last['mediaType']} (expect {LAYER})")
    tar = gzip.decompress(blob(last))
    if config["rootfs"]["diff_ids"][-1] != _digest(tar):
        raise ValueError("config rootfs.diff_ids does not name the layer's tar")
    with tarfile.open(fileobj=io.BytesIO(tar), mode="r:") as t:
        for member in t:
            if Path(member.name).name == PLUGIN and member.isfile():
                return t.extractfile(member).read(), named[0]["digest"]
    raise ValueError(f"{PLUGIN} not found in the archive")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("wasm", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--tag", default="latest")
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    wasm = args.wasm.read_bytes()
    files = build(wasm, args.tag)
    if args.check:
        bad = []
        present = {p.relative_to(args.out).as_posix() for p in args.out.rglob("*") if p.is_file()}
        for extra in sorted(present - set(files)):
            bad.append(f"unexpected file {extra}")
        for rel, data in sorted(files.items()):
            path = args.out / rel
            if not path.is_file() or path.read_bytes() != data:
                bad.append(f"{rel}: differs from a fresh build")
        try:
            module, digest = read_plugin(args.out, args.tag)
            if module != wasm:
                bad.append(f"{PLUGIN} in the image differs from {args.wasm}")
        except (OSError, ValueError, KeyError, tarfile.TarError) as e:
            bad.append(f"reading it as Istio does: {e}")
        for line in bad:
            print(f"{args.out}: {line}", file=sys.stderr)
        if not bad:
            print(f"{args.out}: reproducible; {PLUGIN} = {args.wasm}; manifest {digest}")
        return 1 if bad else 0
    # Write into a fresh directory beside OUT, then swap it in: never a half-written layout.
    tmp = args.out.with_name(args.out.name + ".tmp")
    _rmtree(tmp)
    for rel, data in files.items():
        path = tmp / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    _rmtree(args.out)
    tmp.rename(args.out)
    manifest = json.loads(files["index.json"])["manifests"][0]["digest"]
    print(f"wrote {args.out} (tag {args.tag}, manifest {manifest})")
    return 0


def _rmtree(path: Path):
    import shutil
    if path.exists():
        shutil.rmtree(path)


if __name__ == "__main__":
    sys.exit(main())
