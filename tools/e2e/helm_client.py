#!/usr/bin/env python3
"""Drives a registry with Helm 4's own registry client (the helm-sdkpy package), for the
end-to-end tests. Needs Python >= 3.12. Helm keeps its cache and registry config under HOME;
point HOME (or HELM_*_HOME) at a scratch directory.

  helm_client.py package CHART_DIR DEST_DIR          prints the .tgz path
  helm_client.py [TLS] login HOST --username USER --password-stdin
  helm_client.py logout HOST
  helm_client.py [TLS] push CHART_TGZ oci://HOST/REPO
  helm_client.py [TLS] show-chart oci://HOST/REPO/NAME[:TAG|@DIGEST] OUT_FILE
  helm_client.py [TLS] show-values oci://HOST/REPO/NAME[:TAG|@DIGEST] OUT_FILE

login is Helm's `registry login`: it checks the credentials against the registry (following a
Basic or Bearer challenge) and stores them in Helm's registry config, where push and show find
them. Helm's Go code prints progress on stdout itself, so shown content goes to OUT_FILE. Without a
tag Helm lists the repository's tags and takes the highest chart version.

TLS is --plain-http, or --ca-file FILE to trust a private CA over HTTPS.
"""

import argparse
import asyncio
import sys

from helm_sdkpy import Configuration, Package, Push, RegistryLogin, RegistryLogout, Show


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--plain-http", action="store_true")
    parser.add_argument("--ca-file")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("package")
    p.add_argument("chart_dir")
    p.add_argument("dest_dir")
    p = sub.add_parser("login")
    p.add_argument("host")
    p.add_argument("--username", required=True)
    p.add_argument("--password-stdin", action="store_true", required=True)
    p = sub.add_parser("logout")
    p.add_argument("host")
    p = sub.add_parser("push")
    p.add_argument("chart_tgz")
    p.add_argument("remote")
    for name in ("show-chart", "show-values"):
        p = sub.add_parser(name)
        p.add_argument("ref")
        p.add_argument("out_file")
    args = parser.parse_args()

    config = Configuration(plain_http=args.plain_http)
    if args.command == "package":
        print(asyncio.run(Package(config).run(args.chart_dir, dest_dir=args.dest_dir)))
    elif args.command == "login":
        password = sys.stdin.readline().rstrip("\n")
        asyncio.run(
            RegistryLogin(config).run(
                hostname=args.host,
                username=args.username,
                password=password,
                ca_file=args.ca_file,
                plain_http=args.plain_http,
            )
        )
    elif args.command == "logout":
        asyncio.run(RegistryLogout(config).run(hostname=args.host))
    elif args.command == "push":
        asyncio.run(
            Push(config).run(
                chart_path=args.chart_tgz,
                remote=args.remote,
                plain_http=args.plain_http,
                ca_file=args.ca_file,
            )
        )
    elif args.command == "show-chart":
        write(args.out_file, asyncio.run(Show(config).chart(args.ref)))
    elif args.command == "show-values":
        write(args.out_file, asyncio.run(Show(config).values(args.ref)))


def write(path, text):
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


if __name__ == "__main__":
    main()
