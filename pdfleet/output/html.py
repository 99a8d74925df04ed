"""`pdfleet report PLAN_DIR`: one self-contained HTML file of charts and the plan table.

Plotly (plotly.js inlined once, about 4.8 MB) rather than Vega-Lite rendered to SVG: the reviewer gets
hover values, zoom and legend toggles offline, and the Python side is a pure-Python wheel (vl-convert
ships a native runtime). The page fetches nothing: a Content-Security-Policy forbids every network
source, and plotly.js runs from the inline script.
"""

from __future__ import annotations

import html
import math

import pandas as pd

from pdfleet.output.reader import PlanDir
from pdfleet.plan import shape_label

TOP_WORKLOADS = 40  # per-workload charts show the costliest this many (all when fewer)
TABLE_ROWS = 2000  # plan table rows shown (the parquet has them all)
CSP = ("default-src 'none'; script-src 'unsafe-inline' 'unsafe-eval'; style-src 'unsafe-inline'; "
       "img-src data: blob:; font-src data:")
TABLE_COLUMNS = ("quarter", "workload", "role", "sku", "gpus_per_instance", "dp", "ep", "instances", "gpus", "cost_usd_per_hour",
                 "demand_rps", "utilization", "predicted_ttft_s", "slo_ttft_s", "predicted_tpot_ms", "slo_tpot_ms",
                 "status")
COLORS = ("#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2", "#ff9da6", "#9d755d", "#bab0ac",
          "#eeca3b")


def _layout(fig, title: str, y_title: str, height: int = 420):
    fig.update_layout(title={"text": title, "x": 0.01}, height=height, margin={"l": 60, "r": 20, "t": 60, "b": 60},
                      template="plotly_white", legend={"orientation": "h", "y": -0.18})
    fig.update_yaxes(title_text=y_title)
    return fig


def cost_chart(fleet: pd.DataFrame, hours: float):
    """USD per quarter by sku, stacked; split into capex (amortized purchases) and opex when any is bought."""
    import plotly.graph_objects as go

    quarters = list(dict.fromkeys(fleet["quarter"]))
    split = bool((fleet["capex_usd_per_hour"] > 0).any())
    fig = go.Figure()
    for i, (sku, rows) in enumerate(fleet.groupby("sku", sort=False)):
        if not (rows["cost_usd_per_hour"] > 0).any():
            continue
        rows = rows.set_index("quarter").reindex(quarters)
        parts = (("capex", "capex_usd_per_hour"), ("opex", "opex_usd_per_hour")) if split else (("", "cost_usd_per_hour"),)
        for kind, col in parts:
            if not (rows[col] > 0).any():
                continue
            fig.add_bar(x=quarters, y=rows[col] * hours, name=f"{sku} {kind}".strip(),
                        marker={"color": COLORS[i % len(COLORS)], "pattern": {"shape": "/" if kind == "capex" else ""}},
                        customdata=rows[col], hovertemplate="%{x}: $%{y:,.0f} per quarter ($%{customdata:,.2f}/hour)")
    fig.update_layout(barmode="stack")
    title = "Cost per quarter by sku" + (" (capex hatched: amortized purchases; opex: owned in use + rent)" if split else "")
    return _layout(fig, title, "USD per quarter")


def gpu_chart(fleet: pd.DataFrame):
    """Per sku: GPUs in use (prefill + decode, stacked) against inventory and owned, per quarter."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    used = [s for s, r in fleet.groupby("sku", sort=False) if (r["gpus"] > 0).any() or (r["owned"] > 0).any()]
    cols = min(3, max(1, len(used)))
    nrows = max(1, math.ceil(len(used) / cols))
    fig = make_subplots(rows=nrows, cols=cols, subplot_titles=used or ["no GPUs in use"], shared_xaxes=False)
    for k, sku in enumerate(used):
        rows = fleet[fleet["sku"] == sku]
        at = {"row": k // cols + 1, "col": k % cols + 1}
        first = k == 0
        fig.add_trace(go.Bar(x=rows["quarter"], y=rows["prefill_gpus"], name="prefill GPUs", marker_color=COLORS[0],
                             legendgroup="p", showlegend=first), **at)
        fig.add_trace(go.Bar(x=rows["quarter"], y=rows["decode_gpus"], name="decode GPUs", marker_color=COLORS[1],
                             legendgroup="d", showlegend=first), **at)
        fig.add_trace(go.Scatter(x=rows["quarter"], y=rows["owned"], name="owned", mode="lines+markers",
                                 line={"color": "#333", "dash": "dot"}, legendgroup="o", showlegend=first), **at)
        if rows["inventory_gpus"].notna().any():
            fig.add_trace(go.Scatter(x=rows["quarter"], y=rows["inventory_gpus"], name="inventory", mode="lines+markers",
                                     line={"color": COLORS[3], "dash": "dash"}, legendgroup="i", showlegend=first), **at)
    fig.update_layout(barmode="stack")
    return _layout(fig, "GPUs per sku against inventory and owned", "GPUs", height=320 * nrows + 80)


def _top(plan: pd.DataFrame, n: int) -> tuple[pd.DataFrame, str]:
    cost = plan.groupby("workload", sort=False)["cost_usd_per_hour"].sum()
    if len(cost) <= n:
        return plan, ""
    keep = set(cost.sort_values(ascending=False, kind="stable").index[:n])
    return plan[plan["workload"].isin(keep)], f" (the {n} costliest of {len(cost):,} workloads)"


def _pairs(plan: pd.DataFrame) -> pd.DataFrame:
    """One row per (quarter, workload): the prefill and decode rows side by side."""
    keys = ["quarter", "workload"]
    pre = plan[plan["role"] == "prefill"].set_index(keys)
    dec = plan[plan["role"] == "decode"].set_index(keys)
    return pre.add_suffix("_p").join(dec.add_suffix("_d")).reset_index()


def instances_chart(plan: pd.DataFrame):
    """Planned prefill and decode instances per workload and quarter, labelled nP/mD."""
    import plotly.graph_objects as go

    shown, note = _top(plan, TOP_WORKLOADS)
    pairs = _pairs(shown)
    x = [pairs["quarter"].tolist(), pairs["workload"].tolist()]
    label = [f"{p}P/{d}D" for p, d in zip(pairs["instances_p"], pairs["instances_d"])]
    fig = go.Figure()
    fig.add_bar(x=x, y=pairs["instances_p"], name="prefill instances", marker_color=COLORS[0],
                customdata=_shapes(pairs, "_p"),
                hovertemplate="%{x}: %{y} prefill on %{customdata}")
    fig.add_bar(x=x, y=pairs["instances_d"], name="decode instances", marker_color=COLORS[1], text=label,
                textposition="outside",
                customdata=_shapes(pairs, "_d"),
                hovertemplate="%{x}: %{y} decode on %{customdata}")
    fig.update_layout(barmode="group")
    return _layout(fig, "Instances and P/D per workload" + note, "instances", height=460)


def latency_chart(plan: pd.DataFrame):
    """Predicted TTFT and TPOT as a percentage of their SLOs (below 100%: headroom)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    shown, note = _top(plan, TOP_WORKLOADS)
    pairs = _pairs(shown)
    x = [pairs["quarter"].tolist(), pairs["workload"].tolist()]
    stat = pairs["ttft_statistic_p"].iloc[0] if len(pairs) and pairs["ttft_statistic_p"].nunique() == 1 else "statistic per workload"
    fig = make_subplots(rows=2, cols=1, subplot_titles=[f"TTFT ({stat}) / SLO", "TPOT (at the mean batch) / SLO"],
                        vertical_spacing=0.3)
    for r, (pred, slo, unit) in enumerate((("predicted_ttft_s_p", "slo_ttft_s_p", "s"),
                                            ("predicted_tpot_ms_d", "slo_tpot_ms_d", "ms")), start=1):
        pct = 100 * pairs[pred] / pairs[slo]
        fig.add_trace(go.Bar(x=x, y=pct, name=pred.rsplit("_", 1)[0], showlegend=False,
                             marker_color=[COLORS[3] if v > 100 else COLORS[2] for v in pct.fillna(0)],
                             customdata=list(zip(pairs[pred], pairs[slo], pairs["ttft_statistic_p"] if r == 1 else
                                                 ["mean"] * len(pairs))),
                             hovertemplate=f"%{{x}}: %{{customdata[2]}} %{{customdata[0]:.3g}} {unit} of SLO "
                                           f"%{{customdata[1]:g}} {unit} (%{{y:.0f}}%)"), row=r, col=1)
        fig.add_hline(y=100, line_dash="dash", line_color="#333", row=r, col=1)
    return _layout(fig, "Predicted latency against the SLO (bars below the line: headroom)" + note,
                   "% of SLO", height=820)


SIM_TTFT = {"mean": "ttft_mean_s", "p50": "ttft_p50_s", "p90": "ttft_p90_s", "p99": "ttft_p99_s"}


def simulate_chart(plan: pd.DataFrame, sim: pd.DataFrame):
    """Simulated against predicted: TTFT of the SLO's statistic and mean TPOT, a point per (quarter,
    workload); on the diagonal the model and the simulation agree."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    pairs = _pairs(plan).merge(sim, on=["quarter", "workload"], how="inner")
    col = pairs["ttft_statistic_p"].map(SIM_TTFT)
    sim_ttft = [row[c] if isinstance(c, str) else math.nan for row, c in zip(pairs.to_dict("records"), col)]
    fig = make_subplots(rows=1, cols=2, subplot_titles=["TTFT, s (the SLO's statistic)", "TPOT, ms (mean)"])
    met = pairs["slo_met"].astype(bool)
    text = pairs["quarter"] + " " + pairs["workload"]
    for c, (px, py) in enumerate(((pairs["predicted_ttft_s_p"], pd.Series(sim_ttft)),
                                  (pairs["predicted_tpot_ms_d"], pairs["tpot_mean_ms"])), start=1):
        fig.add_trace(go.Scatter(x=px, y=py, mode="markers", text=text, name="simulated (SLO met: circle, missed: x)",
                                 showlegend=c == 1, marker={"symbol": ["circle" if m else "x" for m in met], "size": 9,
                                                            "color": [COLORS[2] if m else COLORS[3] for m in met]},
                                 hovertemplate="%{text}: predicted %{x:.3g}, simulated %{y:.3g}"), row=1, col=c)
        hi = float(pd.concat([px, py]).max()) * 1.1 if len(px) else 1.0
        fig.add_trace(go.Scatter(x=[0, hi], y=[0, hi], mode="lines", line={"dash": "dash", "color": "#999"},
                                 name="simulated = predicted", showlegend=c == 1), row=1, col=c)
        fig.update_xaxes(title_text="predicted", row=1, col=c)
    return _layout(fig, "Simulated against predicted (simulate.parquet)", "simulated")


def _cell(v) -> str:
    if v is None or (not isinstance(v, str) and pd.isna(v)):
        return "-"
    if isinstance(v, float):
        return f"{v:,.4g}" if abs(v) < 1e4 else f"{v:,.0f}"
    return html.escape(str(v))


def _shapes(pairs: pd.DataFrame, suffix: str) -> list[str]:
    """Hover labels of one role's instance shape per pair ('H200-SXM/8 dp8 ep8'; '-' where none is planned)."""
    one = pd.Series(1, index=pairs.index)  # a plan written before dp/ep (schema < 3) is tensor-parallel
    cols = [pairs.get(f"{k}{suffix}", one) for k in ("sku", "gpus_per_instance", "dp", "ep")]
    return ["-" if sku is None or pd.isna(sku) else shape_label(sku, g, dp, ep) for sku, g, dp, ep in zip(*cols)]


def plan_table(plan: pd.DataFrame) -> str:
    rows = plan.reindex(columns=list(TABLE_COLUMNS)).head(TABLE_ROWS)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in TABLE_COLUMNS)
    body = "\n".join("<tr" + ("" if r[-1] in ("ok", "no_demand") else ' class="bad"') + ">" +
                     "".join(f"<td>{_cell(v)}</td>" for v in r) + "</tr>" for r in rows.itertuples(index=False))
    more = (f"<p>First {TABLE_ROWS:,} of {len(plan):,} rows; plan.parquet has them all.</p>"
            if len(plan) > TABLE_ROWS else "")
    return (f'<div style="overflow-x:auto"><table id="plan-table"><thead><tr>{head}</tr></thead><tbody>\n{body}\n'
            f"</tbody></table></div>{more}")


def _money(x) -> str:
    return "-" if x is None else f"${x:,.2f}"


def header(d: PlanDir) -> str:
    m = d.manifest
    gap = m.get("gap")
    facts = [("input", m.get("input_file")), ("solver", m.get("solver")),
             ("cost", f"{_money(m.get('cost_usd_per_hour'))}/hour on average"),
             ("lower bound", f"{_money(m.get('lower_bound_usd_per_hour'))}/hour"),
             ("gap", "-" if gap is None else f"{gap:.3%}"), ("created", m.get("created_at")),
             ("run", m.get("run_id")), ("schema", m.get("schema_version"))]
    items = "".join(f"<li><b>{html.escape(k)}</b> {html.escape(str(v))}</li>" for k, v in facts if v is not None)
    return f"<h1>pdfleet plan: {html.escape(d.path.name)}</h1><ul class=\"facts\">{items}</ul>"


STYLE = """body{font-family:system-ui,sans-serif;margin:24px;color:#222}
.facts{display:flex;flex-wrap:wrap;gap:18px;list-style:none;padding:0}
.chart{margin:18px 0;border:1px solid #eee}
table{border-collapse:collapse;font-size:12px}th,td{padding:3px 8px;border-bottom:1px solid #eee;text-align:right}
th{position:sticky;top:0;background:#fafafa}td{white-space:nowrap}tr.bad td{color:#b00}"""


def charts(d: PlanDir) -> list:
    hours = float(d.manifest.get("hours_per_quarter") or 2190.0)
    figs = [cost_chart(d.fleet, hours), gpu_chart(d.fleet), instances_chart(d.plan), latency_chart(d.plan)]
    if d.simulate is not None:
        figs.append(simulate_chart(d.plan, d.simulate))
    return figs


def render(d: PlanDir) -> str:
    """The report as one HTML string: plotly.js inline once, a div per chart, the plan table."""
    import plotly.io as pio
    from plotly.offline import get_plotlyjs

    divs = [pio.to_html(fig, include_plotlyjs=False, full_html=False, div_id=f"chart-{i}",
                        config={"displaylogo": False, "responsive": True})
            for i, fig in enumerate(charts(d))]
    body = "\n".join(f'<div class="chart">{div}</div>' for div in divs)
    return (f'<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
            f"<title>pdfleet plan {html.escape(d.path.name)}</title><style>{STYLE}</style>"
            f"<script>{get_plotlyjs()}</script></head><body>\n{header(d)}\n{body}\n"
            f"<h2>Plan</h2>\n{plan_table(d.plan)}\n</body></html>\n")
