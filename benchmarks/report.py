"""Turn a pytest-benchmark JSON into benchmarks/RESULTS.md: per group, medians and speed-up ratios of the
native op over eager PyTorch and over torch.compile, all measured in the same run.

usage: python benchmarks/report.py RESULTS.json [MORE.json ...] OUT.md
(several JSONs: their benchmarks are merged, a later one replacing an earlier one of the same name). The
photo path's groups get their own section; everything from the first "## " heading of an existing OUT.md on
(hand-written notes on earlier runs) is kept below the generated part.
"""
import json
import os
import platform
import re
import sys
from collections import defaultdict


def impl_of(name: str) -> str:
    if name.startswith("test_copy_rate"):
        return "copy"
    m = re.search(r"[-\[](native|eager|compiled|copy)[-\]]", name)
    return m.group(1) if m else name


PHOTO_BASELINES = {"photo": "float path", "native": "compiled"}  # the new path and what it is compared with


def photo_section(photo: dict, runs: dict) -> list[str]:
    """Per photo group: each implementation's median and its ratio to one astype(float32) and to one copy of
    the same image, and how much faster the photo path is than the float path / the compiled reference."""
    lines = ["", "## Photo path (issue 16): uint8 / uint16 photos in and out, shipped Zero-DCE++", "",
             "Run " + ", ".join(sorted(runs)) + ". astype = one `a.astype(np.float32)` of the same image, copy = one "
             "copy of its bytes; photo = `lowlight_core.enhance` today, float path = the pre-photo path; "
             "native = `ops.photo_curve`, compiled = `torch.compile(reference.photo_curve)`, value native = "
             "`ops.photo_value_curve` (what value models such as the shipped Zero-DCE++ run; see "
             "benchmarks/test_bench_photo.py).", "",
             "| group | implementation | median ms | / astype(float32) | / copy | photo path speed-up |",
             "|---|---|---:|---:|---:|---:|"]
    for group in sorted(photo):
        g = photo[group]
        new = next((k for k in PHOTO_BASELINES if k in g), None)
        for impl, t in sorted(g.items(), key=lambda kv: kv[1]):
            ratio = lambda k: f"{t / g[k]:.2f}×" if k in g else "–"  # noqa: E731
            speedup = f"{t / g[new]:.1f}×" if new and impl != new and impl not in ("astype", "copy", "value native") \
                else ""
            lines.append(f"| {group} | {impl} | {t * 1e3:.1f} | {ratio('astype')} | {ratio('copy')} | {speedup} |")
    return lines


def main(*paths: str) -> None:
    *srcs, dst = paths
    benchmarks, runs = {}, {}
    for src in srcs:
        data = json.load(open(src))
        for b in data["benchmarks"]:
            benchmarks[b["fullname"]] = b
            if b["group"].startswith("photo"):
                runs[f"{data['datetime'][:16].replace('T', ' ')} UTC"] = True
    groups = defaultdict(dict)
    photo = defaultdict(dict)
    first_call = None
    for b in benchmarks.values():
        if b["group"] == "first call":
            first_call = b["extra_info"]["first_call_ms"]
            continue
        if b["group"].startswith("photo"):
            photo[b["group"]][(b["params"] or {}).get("impl", "photo")] = b["stats"]["median"]  # napari: photo only
            continue
        groups[b["group"]][impl_of(b["name"])] = b["stats"]["median"]
    data = json.load(open(srcs[0]))

    info = data["machine_info"]
    lines = [
        "# Benchmark results",
        "",
        f"Machine: {info.get('cpu', {}).get('brand_raw', platform.processor())}, "
        f"{data['machine_info'].get('cpu', {}).get('count', '?')} logical CPUs; "
        f"torch threads as set by BENCH_THREADS (default 2); date {data['datetime'][:10]}.",
        "Medians of pytest-benchmark rounds, one run (`make bench`). native = lowlight fused kernel, "
        "eager = lowlight_core.reference in plain PyTorch, compiled = torch.compile(reference) (warm, "
        "compile time excluded). copy = `dst.copy_(src)` of the bytes the forward must read and write.",
        "",
        "| group | native ms | eager ms | compiled ms | eager / native | compiled / native | native % of copy rate |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    others = sorted(g for g in groups if "native" not in groups[g])
    for group in sorted(set(groups) - set(others)):
        g = groups[group]
        n = g["native"]

        def ms(k):
            return f"{g[k] * 1e3:.2f}" if k in g else "–"

        def ratio(k):
            return f"{g[k] / n:.2f}×" if k in g else "–"

        copy = f"{100 * g['copy'] / n:.0f}%" if "copy" in g else "–"
        lines.append(f"| {group} | {ms('native')} | {ms('eager')} | {ms('compiled')} | {ratio('eager')} | "
                     f"{ratio('compiled')} | {copy} |")
    if others:
        lines += ["", "| other benchmarks (napari widget, end to end) | median ms |", "|---|---:|"]
        lines += [f"| {group} | {v * 1e3:.1f} |" for group in others for v in groups[group].values()]
    if first_call is not None:
        lines += ["", f"First native `le_curve` call in a fresh process (1×3×900×1200, alpha 1/12): "
                      f"{first_call:.1f} ms (median of 3 processes)."]
    if photo:
        lines += photo_section(photo, runs)
    notes = ""
    if os.path.exists(dst):  # hand-written notes below the generated part stay
        old = open(dst).read()
        starts = [m.start() for m in re.finditer(r"^## ", old, re.M)
                  if not old.startswith("## Photo path", m.start())]
        if starts:
            notes = "\n" + old[starts[0]:]
    open(dst, "w").write("\n".join(lines) + "\n" + notes)
    print("\n".join(lines))


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(*sys.argv[1:])
