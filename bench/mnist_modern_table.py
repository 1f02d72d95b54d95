"""The table "DLG + best solver against every peer at 10 and 20 NFE" for MNIST, from the two results.json files.

  python bench/mnist_modern_table.py > bench/results/modern_solvers/mnist/table.md

Peers from sigma_max: the best (lowest MNIST-FID) point of each sampler with at most the budget's NFE.  DLG: the
cheapest point of each denoising solver by the full ledger per output (none fits 10 or 20), with the paper's count
and the ledger's parts.  The paper's six come from bench/results/mnist_n2000 (n = 2000, another real-data floor).
"""

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent / "results" / "modern_solvers" / "mnist"
NEW = json.loads((HERE / "results.json").read_text())
OLD = json.loads((HERE.parents[1] / "mnist_n2000" / "results.json").read_text())
NAMES = {"dpmpp_2m": "DPM++ 2M", "dpmpp_2m_sde": "DPM++ 2M SDE", "unipc": "UniPC", "restart": "Restart",
         "kar1": "KAR1", "kar2": "KAR2", "pf_euler": "probability-flow Euler", "rk45": "RK45",
         "reverse_diffusion": "reverse diffusion", "euler_maruyama": "Euler-Maruyama"}


def _setting(p):
    return f"rtol {p['setting']:g}" if p["integrator"] == "rk45" else f"{p['setting']:g} steps"


def rows(budget):
    out = []
    for res, n, tag in ((NEW, NEW["settings"]["n"], "new"), (OLD, OLD["settings"]["n"], "paper's six")):
        pts = res["points"]
        for name in dict.fromkeys(p["integrator"] for p in pts):
            van = [p for p in pts if p["integrator"] == name and p["variant"] == "vanilla" and p["nfe"] <= budget]
            if van:
                b = min(van, key=lambda p: p["fid"])
                out.append((b["fid"], f"{NAMES[name]} from sigma_max, {_setting(b)}", f"{b['nfe']:.0f}", n))
            else:
                out.append((float("inf"), f"{NAMES[name]} from sigma_max", f"no point <= {budget}", n))
            dlg = [p for p in pts if p["integrator"] == name and p["variant"].startswith("dlg")]
            if dlg:
                c = min(dlg, key=lambda p: p["nfe"])
                label = f"*DLG + {NAMES[name]}, {_setting(c)} (cheapest DLG point; over budget)*"
                if tag == "new" or name in ("pf_euler", "rk45"):
                    out.append((float("inf"), label, f"*{c['nfe']:.1f} full ({c['nfe_paper']:.0f} paper)*", n,
                                c["fid"]))
    lines = [f"**Budget {budget} NFE per output**", "", "| sampler | NFE | MNIST-FID | n |", "|---|---|---|---|"]
    for r in sorted(out, key=lambda r: (r[0], r[1])):
        fid = r[4] if len(r) > 4 else r[0]
        lines.append(f"| {r[1]} | {r[2]} | {'--' if fid == float('inf') else f'{fid:.1f}'} | {r[3]} |")
    return "\n".join(lines)


def ledger_parts():
    lines = ["| DLG point | full | paper | " + " | ".join(
        k for k in next(p for p in NEW["points"] if "parts" in p)["parts"]) + " | MNIST-FID | chosen sigma median |",
    ]
    lines.append("|---" * (len(lines[0].split("|")) - 2) + "|")
    for p in sorted((p for p in NEW["points"] if "parts" in p), key=lambda p: (p["integrator"], p["nfe"])):
        lines.append(f"| {NAMES[p['integrator']]}, {_setting(p)} | {p['nfe']:.1f} | {p['nfe_paper']:.1f} | "
                     + " | ".join(f"{v:.2f}" for v in p["parts"].values())
                     + f" | {p['fid']:.1f} | {p['chosen_sigma_median']:.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(rows(10), "", rows(20), "", "**Where DLG's NFE go (per output, new solvers)**", "", ledger_parts(),
          "", f"Real-data floors: {NEW['real_data_fid_floor']:.2f} at n = {NEW['settings']['n']}, "
          f"{OLD['real_data_fid_floor']:.2f} at n = {OLD['settings']['n']}.", sep="\n")
