"""``python -m sandboxes build-image | cleanup | smoke``."""

from __future__ import annotations

import argparse
import sys

from sandboxes.image import DEFAULT_PACKAGES, build_debootstrap, build_dockerfile


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sandboxes")
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build-image", help="build the sandbox image (idempotent); prints its tag")
    b.add_argument("--packages", default="",
                   help="extra Debian packages, comma-separated (e.g. python3-numpy)")
    b.add_argument("--mirror", default=None, help="Debian mirror (default: the one apt uses)")
    b.add_argument("--dockerfile", default=None,
                   help="build this Dockerfile instead (needs a reachable registry for FROM)")
    b.add_argument("--force", action="store_true", help="rebuild even if the tag exists")
    c = sub.add_parser("cleanup", help="remove sandbox containers of dead owners")
    c.add_argument("--all", action="store_true", help="remove every sandbox container")
    s = sub.add_parser("smoke", help="start a pool of 1 and run python3 in it")
    s.add_argument("--image", default=None)
    args = ap.parse_args(argv)

    if args.cmd == "build-image":
        if args.dockerfile:
            print(build_dockerfile(args.dockerfile))
        else:
            extra = tuple(p for p in args.packages.split(",") if p)
            print(build_debootstrap(DEFAULT_PACKAGES + extra, mirror=args.mirror, force=args.force))
        return 0
    if args.cmd == "cleanup":
        from sandboxes.pool import reap_orphans
        print("\n".join(reap_orphans(all_owners=args.all)))
        return 0
    if args.cmd == "smoke":
        from sandboxes.pool import SandboxPool
        with SandboxPool(args.image, size=1) as pool:
            r = pool.run("python3 -c 'import sys; print(sys.version)'", timeout=10)
        print(r)
        return 0 if r.exit_code == 0 else 1
    return 2


if __name__ == "__main__":
    sys.exit(main())
