"""Turn a pytest-benchmark JSON into benchmarks/RESULTS.md: per group, medians and speed-up ratios of the
native op over eager PyTorch and over torch.compile, all measured in the same run.

usage: python benchmarks/report.py RESULTS.json OUT.md
"""
import json
import platform
import re
import sys
from collections import defaultdict


def impl_of(name: str) -> str:
    if name.startswith("test_copy_rate"):
        return "copy"
    m = re.search(r"[-\[](native|eager|compiled)[-\]]", name)
    return m.group(1) if m else name


def main(src: str, dst: str) -> None:
    data = json.load(open(src))
    groups = defaultdict(dict)
    first_call = None
    for b in data["benchmarks"]:
        if b["group"] == "first call":
            first_call = b["extra_info"]["first_call_ms"]
            continue
        groups[b["group"]][impl_of(b["name"])] = b["stats"]["median"]

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
    open(dst, "w").write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main(*sys.argv[1:3])
