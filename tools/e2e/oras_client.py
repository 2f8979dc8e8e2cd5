#!/usr/bin/env python3
"""Drives a registry with oras-py (the Python ORAS client), for the end-to-end tests.

Every command prints one JSON object on stdout; errors exit non-zero with the registry's answer.

  oras_client.py [...] --auth-config FILE login HOST --username USER --password-stdin
      oras-py's login(): stores the credentials in the Docker-style FILE (oras-py checks nothing
      against the registry at login time). push-files and pull given the same --auth-config read
      them back and follow the registry's 401 challenge (Bearer realm or Basic) with them.

  oras_client.py [--insecure | --ca FILE] push-files REF FILE...
      oras-py's own push(): a plain artifact whose layers carry the file names.
  oras_client.py [...] push-artifact REF --artifact-type TYPE [--subject-ref REF]
                       [--annotation KEY=VALUE]... FILE...
      A manifest built here: artifactType, the empty config, one layer per file, and optionally a
      subject (the manifest REF points at), uploaded with upload_blob and upload_manifest. This is
      how signatures and SBOMs are attached to images.
      --chunk-size N uploads the files in PATCH chunks of N bytes (POST, PATCH..., PUT).
  oras_client.py [...] delete-tag REF
      oras-py's delete_tag(): resolves the tag with HEAD, then DELETEs the manifest by digest.
  oras_client.py [...] pull REF OUTDIR
      oras-py's pull(): downloads every layer under its title annotation.
  oras_client.py [...] manifest REF
      The manifest as served, with the response's content type, digest and OCI-Subject headers.
"""

import argparse
import hashlib
import json
import os
import sys
import tempfile

import oras.container
import oras.defaults
import oras.oci
import oras.provider

EMPTY_CONFIG_TYPE = "application/vnd.oci.empty.v1+json"
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
TITLE = "org.opencontainers.image.title"


def registry(args, ref, stored_login=True):
    host = ref.split("/", 1)[0]
    if args.ca:
        reg = oras.provider.Registry(
            hostname=host, insecure=False, tls_verify=args.ca, auth_backend=args.auth_backend
        )
    else:
        reg = oras.provider.Registry(
            hostname=host, insecure=args.insecure, auth_backend=args.auth_backend
        )
    if stored_login and args.auth_config:
        # push() and pull() load it again themselves; the calls made here directly
        # (upload_blob, do_request) only see credentials loaded beforehand.
        reg.auth.load_configs(reg.get_container(ref), configs=[args.auth_config])
    return reg


def check(response, what):
    if response.status_code not in (200, 201, 202):
        sys.exit(f"{what}: HTTP {response.status_code}: {response.text}")
    return response


def descriptor(path, media_type, annotations=None):
    with open(path, "rb") as f:
        data = f.read()
    d = {
        "mediaType": media_type,
        "digest": "sha256:" + hashlib.sha256(data).hexdigest(),
        "size": len(data),
    }
    if annotations:
        d["annotations"] = annotations
    return d


def fetch_manifest(reg, ref):
    """GET a manifest and return (body bytes, headers)."""
    container = reg.get_container(ref)
    accept = ", ".join(oras.defaults.default_manifest_accepted_media_types + [MANIFEST_TYPE])
    url = f"{reg.prefix}://{container.manifest_url()}"
    response = reg.do_request(url, "GET", headers={"Accept": accept})
    if response.status_code != 200:
        sys.exit(f"GET {url}: HTTP {response.status_code}: {response.text}")
    return response.content, response.headers


def cmd_login(args):
    if not args.auth_config:
        sys.exit("login needs --auth-config FILE")
    password = sys.stdin.readline().rstrip("\n")
    reg = registry(args, args.host, stored_login=False)
    result = reg.login(
        username=args.username,
        password=password,
        tls_verify=bool(args.ca),
        hostname=args.host,
        config_path=args.auth_config,
    )
    print(json.dumps(result))


def cmd_push_files(args):
    reg = registry(args, args.ref)
    cwd = os.getcwd()
    # oras-py names layers after the paths it is given: push from the files' directory.
    os.chdir(os.path.dirname(os.path.abspath(args.files[0])))
    try:
        response = reg.push(
            target=args.ref,
            files=[os.path.basename(f) for f in args.files],
            config_path=args.auth_config,
        )
    finally:
        os.chdir(cwd)
    check(response, "push")
    print(json.dumps({"digest": response.headers.get("Docker-Content-Digest")}))


def cmd_push_artifact(args):
    reg = registry(args, args.ref)
    container = reg.get_container(args.ref)
    with tempfile.TemporaryDirectory() as tmp:
        config_path = os.path.join(tmp, "config.json")
        with open(config_path, "wb") as f:
            f.write(b"{}")
        config = descriptor(config_path, EMPTY_CONFIG_TYPE)
        check(reg.upload_blob(config_path, container, config), "upload empty config")
    layers = []
    for path in args.files:
        layer = descriptor(path, args.layer_type, {TITLE: os.path.basename(path)})
        if args.chunk_size:
            response = reg.upload_blob(
                path, container, layer, do_chunked=True, chunk_size=args.chunk_size
            )
        else:
            response = reg.upload_blob(path, container, layer)
        check(response, f"upload {path}")
        layers.append(layer)
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "artifactType": args.artifact_type,
        "config": config,
        "layers": layers,
    }
    if args.subject_ref:
        body, headers = fetch_manifest(reg, args.subject_ref)
        manifest["subject"] = {
            "mediaType": headers["Content-Type"].split(";")[0].strip(),
            "digest": "sha256:" + hashlib.sha256(body).hexdigest(),
            "size": len(body),
        }
    if args.annotation:
        manifest["annotations"] = dict(a.split("=", 1) for a in args.annotation)
    response = check(reg.upload_manifest(manifest, container), "upload manifest")
    sent = json.dumps(manifest).encode()  # what requests sent as the body (json=manifest)
    print(
        json.dumps(
            {
                "digest": response.headers.get("Docker-Content-Digest"),
                "computed_digest": "sha256:" + hashlib.sha256(sent).hexdigest(),
                "size": len(sent),
                "status": response.status_code,
                "oci_subject": response.headers.get("OCI-Subject"),
                "subject": manifest.get("subject"),
            }
        )
    )


def cmd_delete_tag(args):
    reg = registry(args, args.ref)
    container = reg.get_container(args.ref)
    if not reg.delete_tag(container, container.tag):
        sys.exit(f"delete_tag: {args.ref} not found")
    print(json.dumps({"deleted": args.ref}))


def cmd_pull(args):
    reg = registry(args, args.ref)
    files = reg.pull(target=args.ref, outdir=args.outdir, config_path=args.auth_config)
    print(json.dumps({"files": sorted(files)}))


def cmd_manifest(args):
    reg = registry(args, args.ref)
    body, headers = fetch_manifest(reg, args.ref)
    print(
        json.dumps(
            {
                "manifest": json.loads(body),
                "content_type": headers.get("Content-Type"),
                "digest": headers.get("Docker-Content-Digest"),
                "computed_digest": "sha256:" + hashlib.sha256(body).hexdigest(),
            }
        )
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    tls = parser.add_mutually_exclusive_group()
    tls.add_argument("--insecure", action="store_true", help="plain HTTP")
    tls.add_argument("--ca", help="CA bundle to trust for HTTPS")
    parser.add_argument("--auth-config", help="Docker-style credentials file (see login)")
    parser.add_argument("--auth-backend", choices=["token", "basic"], default="token")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("login")
    p.add_argument("host")
    p.add_argument("--username", required=True)
    p.add_argument("--password-stdin", action="store_true", required=True)
    p.set_defaults(func=cmd_login)

    p = sub.add_parser("push-files")
    p.add_argument("ref")
    p.add_argument("files", nargs="+")
    p.set_defaults(func=cmd_push_files)

    p = sub.add_parser("push-artifact")
    p.add_argument("ref")
    p.add_argument("--artifact-type", required=True)
    p.add_argument("--layer-type", default="application/octet-stream")
    p.add_argument("--subject-ref")
    p.add_argument("--annotation", action="append")
    p.add_argument("--chunk-size", type=int)
    p.add_argument("files", nargs="+")
    p.set_defaults(func=cmd_push_artifact)

    p = sub.add_parser("delete-tag")
    p.add_argument("ref")
    p.set_defaults(func=cmd_delete_tag)

    p = sub.add_parser("pull")
    p.add_argument("ref")
    p.add_argument("outdir")
    p.set_defaults(func=cmd_pull)

    p = sub.add_parser("manifest")
    p.add_argument("ref")
    p.set_defaults(func=cmd_manifest)

    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
