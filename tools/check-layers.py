#!/usr/bin/env python3
"""Include direction: each layer includes only its own and lower layers'
headers (docs/ARCHITECTURE.md "Layers"):

    base <- buffer <- drivers <- metrics <- transport <- apps, bench, examples

Inside src/drivers: core/ and kit/ never include a driver's folder, and a
driver includes no other driver's folder (splice is tcp's zero-copy mode and
may use tcp's header). bench/ and examples/ include public headers only
(ferry/*.h), except bench/micro, which measures internals on purpose; so do
apps/ (each app includes its own headers from its root, e.g. "proto/wire.h").
Exit 1 and one line per violation; silent when clean."""
import os
import re
import sys

GENERATED = {"ferry_config.h", "registry_gen.h"}  # written by meson into the build dir
RANK = {"base": 0, "buffer": 1, "drivers": 2, "metrics": 3, "transport": 4}
ALLOWED_CROSS_DRIVER = {("splice", "tcp")}
INC = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def layer_of(rel):
    """rel is a path under src/; the layer is its first component."""
    return rel.split("/", 1)[0]


def resolve(root, path, inc):
    """The src/-relative path an include names, or None (public or outside)."""
    if inc.startswith(("ferry/", "ferryfs/")) or inc in GENERATED:
        return None
    here = os.path.join(os.path.dirname(path), inc)
    app = os.path.join(*path.split("/")[:2]) if path.startswith("apps/") else None
    if os.path.exists(os.path.join(root, here)):
        full = os.path.normpath(here)
    elif app and os.path.exists(os.path.join(root, app, inc)):
        full = os.path.normpath(os.path.join(app, inc))  # the app's own root
    elif os.path.exists(os.path.join(root, "src", inc)):
        full = os.path.normpath(os.path.join("src", inc))
    else:
        return "?" + inc
    return full[4:] if full.startswith("src/") else "!" + full


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "."
    bad = []
    for top in ("src", "bench", "examples", "apps"):
        for d, _, files in os.walk(os.path.join(root, top)):
            for f in files:
                if not f.endswith((".c", ".h", ".cc")):
                    continue
                path = os.path.relpath(os.path.join(d, f), root)
                text = open(os.path.join(root, path), encoding="utf-8").read()
                for m in INC.finditer(text):
                    inc = m.group(1)
                    line = text.count("\n", 0, m.start()) + 1
                    tgt = resolve(root, path, inc)
                    where = "%s:%d: \"%s\"" % (path, line, inc)
                    if tgt is None:
                        continue
                    if tgt.startswith("?"):
                        bad.append("%s: no such header" % where)
                        continue
                    if top != "src":
                        if top == "bench" and path.startswith("bench/micro/"):
                            continue
                        if tgt.startswith("!"):  # a sibling header of the program
                            continue
                        bad.append("%s: %s uses library internals (public headers only)" % (where, top))
                        continue
                    if tgt.startswith("!"):
                        bad.append("%s: reaches outside src/" % where)
                        continue
                    mine, theirs = layer_of(path[4:]), layer_of(tgt)
                    if RANK.get(theirs, 99) > RANK.get(mine, -1):
                        bad.append("%s: %s includes %s (upward)" % (where, mine, theirs))
                        continue
                    if mine == theirs == "drivers":
                        a = path[4:].split("/")[1]
                        b = tgt.split("/")[1]
                        if a == b or b in ("core", "kit") and a != "kit" or \
                                (a, b) in ALLOWED_CROSS_DRIVER:
                            continue
                        if a == "kit" and b == "kit":
                            continue
                        if a == "kit" and b == "core":
                            continue
                        bad.append("%s: drivers/%s includes drivers/%s" % (where, a, b))
    for b in bad:
        print(b)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
