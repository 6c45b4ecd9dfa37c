/* Tandem dashboard: renders the runs served by dashboard/server.py (live, polling the JSON
 * API) or embedded by dashboard/report.py (static: window.TANDEM_DATA). Same plots in both.
 *
 * Data per run (from dashboard/data.py):
 *   summary  /api/runs            id, label, algo, env, framework, status, reuse, issues, ...
 *   cols     /api/run/ID/metrics  columnar rows: env_steps, wall_time_s, grad_updates,
 *                                 ret_smooth, replay_ratio, env_steps_per_s, ... (one per row)
 *   points                        raw episode returns: row index, position in the row's
 *                                 interval (0..1], return
 *   groups   /api/groups          median + min-max band per group of seeds
 */
(function () {
  "use strict";

  const embedded = document.getElementById("tandem-data");
  const STATIC = embedded ? JSON.parse(embedded.textContent) : window.TANDEM_DATA || null;
  const POLL_MS = 1500;
  const MAX_POINTS = 4000;
  const X_TITLES = { env_steps: "Env steps", wall_time_s: "Wall-clock time (s)", grad_updates: "Gradient updates" };
  const ALGO_COLORS = {
    pg: "#1f77b4", reinforce: "#1f77b4", vpg: "#1f77b4", ppo: "#2ca02c", a2c: "#17becf",
    dqn: "#ff7f0e", sac: "#d62728", td3: "#9467bd", ddpg: "#e377c2", qlearn: "#8c564b", qeval: "#8c564b",
  };
  const FALLBACK_COLORS = ["#7f7f7f", "#bcbd22", "#393b79", "#637939", "#843c39"];
  const PLOT_CONFIG = { displaylogo: false, responsive: true, modeBarButtonsToRemove: ["lasso2d", "select2d"] };

  const state = {
    runs: [], byId: {}, data: {}, groups: {}, groupsKey: "", rootIssues: [], roots: [], smooth: 20,
    usesBins: [], selected: new Set(), deselected: new Set(), x: "env_steps", env: "", algo: "",
    groupSeeds: true, raw: true, dirty: true, seenIssues: new Set(), connected: null,
  };

  const $ = (id) => document.getElementById(id);
  const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));

  // ------------------------------------------------------------------ formatting, colors

  function fmt(v, digits) {
    if (v === null || v === undefined || Number.isNaN(v)) return "–";
    const a = Math.abs(v);
    if (digits === undefined) digits = a >= 100 ? 0 : a >= 10 ? 1 : 2;
    return v.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: 0 });
  }
  function fmtSteps(v) {
    if (v === null || v === undefined) return "–";
    if (v >= 1e6) return (v / 1e6).toFixed(2) + "M";
    if (v >= 1e4) return (v / 1e3).toFixed(1) + "k";
    return String(Math.round(v));
  }
  function hexToRgb(h) { const n = parseInt(h.slice(1), 16); return [(n >> 16) & 255, (n >> 8) & 255, n & 255]; }
  function shade(hex, k) {
    // Variant k of a group color: alternately darker and lighter.
    if (!k) return hex;
    const f = (k % 2 ? -1 : 1) * 0.22 * Math.ceil(k / 2);
    const c = hexToRgb(hex).map((v) => Math.round(f < 0 ? v * (1 + f) : v + (255 - v) * f));
    return "#" + c.map((v) => v.toString(16).padStart(2, "0")).join("");
  }
  function rgba(hex, a) { const c = hexToRgb(hex); return `rgba(${c[0]},${c[1]},${c[2]},${a})`; }
  function colorOf(run) {
    let base = ALGO_COLORS[(run.algo || "").toLowerCase()];
    if (!base) {
      let h = 0; for (const ch of run.algo || "") h = (h * 31 + ch.charCodeAt(0)) >>> 0;
      base = FALLBACK_COLORS[h % FALLBACK_COLORS.length];
    }
    return shade(base, run.variant || 0);
  }
  const dashOf = (run) => (run.framework === "rllib" ? "dash" : "solid");

  // ------------------------------------------------------------------ selection

  function visibleRuns() {
    return state.runs.filter((r) => (!state.env || r.env === state.env) && (!state.algo || r.algo === state.algo));
  }
  function shownRuns() { return visibleRuns().filter((r) => state.selected.has(r.id)); }

  function noteIssues(list) {
    for (const i of list) {
      const key = i.level + "|" + i.message;
      if (state.seenIssues.has(key)) continue;
      state.seenIssues.add(key);
      (i.level === "error" ? console.error : console.warn)("tandem: " + i.message);
    }
  }

  function ingestRuns(payload) {
    state.roots = payload.roots || [];
    state.rootIssues = payload.issues || [];
    state.smooth = payload.smooth || state.smooth;
    state.usesBins = payload.uses_bins || state.usesBins;
    const before = JSON.stringify(state.runs);
    state.runs = payload.runs || [];
    state.byId = {};
    for (const r of state.runs) {
      state.byId[r.id] = r;
      if (!state.deselected.has(r.id)) state.selected.add(r.id);
    }
    noteIssues(state.rootIssues);
    for (const r of state.runs) noteIssues(r.issues || []);
    if (JSON.stringify(state.runs) !== before) state.dirty = true;
  }

  function ingestMetrics(m) {
    const cur = state.data[m.id];
    if (!cur || cur.gen !== m.gen || m.since === 0) {
      state.data[m.id] = { gen: m.gen, next: m.next, cols: m.cols, points: m.points };
    } else if (m.since === cur.next) {
      for (const k of Object.keys(m.cols)) cur.cols[k] = (cur.cols[k] || []).concat(m.cols[k]);
      for (const k of Object.keys(m.points)) cur.points[k] = (cur.points[k] || []).concat(m.points[k]);
      cur.next = m.next;
    } else {
      return; // out of order; the next poll refetches
    }
    state.dirty = true;
  }

  // ------------------------------------------------------------------ live polling

  async function getJSON(url) {
    const res = await fetch(url, { cache: "no-store" });
    if (!res.ok) throw new Error(url + ": HTTP " + res.status);
    return res.json();
  }

  async function pollOnce() {
    ingestRuns(await getJSON("api/runs"));
    const wanted = shownRuns();
    await Promise.all(wanted.map(async (r) => {
      const cur = state.data[r.id];
      let since = 0;
      if (cur && cur.gen === r.gen) {
        if (cur.next >= r.rows) return;
        since = cur.next;
      }
      ingestMetrics(await getJSON(`api/run/${encodeURIComponent(r.id)}/metrics?since=${since}`));
    }));
    const counts = {};
    for (const r of wanted) counts[r.group] = (counts[r.group] || 0) + 1;
    const ids = wanted.filter((r) => counts[r.group] > 1).map((r) => r.id);
    const key = state.x + "|" + ids.map((id) => id + ":" + (state.data[id] ? state.data[id].next : 0)).join(",");
    if (state.groupSeeds && ids.length && key !== state.groupsKey) {
      state.groups = await getJSON(`api/groups?x=${state.x}&ids=${ids.map(encodeURIComponent).join(",")}`);
      state.groupsKey = key;
      state.dirty = true;
    }
  }

  function setLive(ok, text) {
    const el = $("live");
    el.classList.toggle("ok", ok);
    el.classList.toggle("down", !ok);
    $("live-text").textContent = text;
  }

  async function loop() {
    try {
      await pollOnce();
      if (state.connected !== true) state.dirty = true;
      state.connected = true;
      setLive(true, "live · " + new Date().toLocaleTimeString());
    } catch (e) {
      if (state.connected !== false) console.error("tandem: dashboard server unreachable: " + e.message);
      state.connected = false;
      state.dirty = true;
      setLive(false, "server unreachable, retrying");
    }
    if (state.dirty) render();
    setTimeout(loop, POLL_MS);
  }

  // ------------------------------------------------------------------ static (report) mode

  function loadStatic() {
    ingestRuns(STATIC);
    for (const id of Object.keys(STATIC.metrics || {})) ingestMetrics(STATIC.metrics[id]);
    state.connected = true;
    $("live").classList.add("static");
    $("live-text").textContent = "report · generated " + new Date(STATIC.time * 1000).toLocaleString();
    $("subtitle").textContent = "sample-efficiency report";
    pickStaticGroups();
  }
  function pickStaticGroups() {
    // Bands were computed from every member; show those with >= 2 members selected.
    const all = (STATIC.groups || {})[state.x] || {};
    const out = {};
    for (const [k, g] of Object.entries(all)) {
      if (g.members.filter((id) => state.selected.has(id) && visibleRuns().some((r) => r.id === id)).length > 1) out[k] = g;
    }
    state.groups = out;
  }

  // ------------------------------------------------------------------ plots

  function baseLayout(title, xTitle, yTitle, extra) {
    return Object.assign({
      title: { text: title, font: { size: 14 }, x: 0.01, xanchor: "left", yref: "container", y: 0.985, yanchor: "top" },
      xaxis: { title: { text: xTitle }, zeroline: false, gridcolor: "#eef0f3" },
      yaxis: { title: { text: yTitle }, zeroline: false, gridcolor: "#eef0f3" },
      margin: { l: 64, r: 16, t: 44, b: 48 },
      height: 340,
      paper_bgcolor: "#fff", plot_bgcolor: "#fff",
      font: { size: 12, color: "#1d232b" },
      legend: { orientation: "h", x: 0, xanchor: "left", y: 1.0, yanchor: "bottom", font: { size: 11 } },
      hovermode: "closest",
      uirevision: state.x,
    }, extra || {});
  }

  function emptyLayout(title, xTitle, yTitle, text) {
    return baseLayout(title, xTitle, yTitle, {
      annotations: [{ text, showarrow: false, xref: "paper", yref: "paper", x: 0.5, y: 0.5, font: { color: "#6b7480" } }],
      xaxis: { title: { text: xTitle }, visible: true, showticklabels: false, showgrid: false },
      yaxis: { title: { text: yTitle }, showticklabels: false, showgrid: false },
    });
  }

  function draw(div, traces, layout) {
    if (!window.Plotly) return;
    Plotly.react(div, traces, layout, PLOT_CONFIG);
  }

  function xCol(id) { const d = state.data[id]; return d ? d.cols[state.x] || [] : []; }

  function returnTraces(runs) {
    const traces = [];
    const grouped = new Set();
    if (state.groupSeeds) {
      for (const [key, g] of Object.entries(state.groups)) {
        const members = runs.filter((r) => g.members.includes(r.id));
        if (members.length < 2 || !g.x.length) continue;
        members.forEach((r) => grouped.add(r.id));
        const r0 = members[0];
        const col = colorOf(r0);
        const name = `${r0.group_label} · median of ${members.length} seeds`;
        traces.push({ x: g.x, y: g.lo, type: "scatter", mode: "lines", line: { width: 0, color: col },
          hoverinfo: "skip", showlegend: false, legendgroup: key, name: esc(name + " (min)") });
        traces.push({ x: g.x, y: g.hi, type: "scatter", mode: "lines", line: { width: 0, color: col },
          fill: "tonexty", fillcolor: rgba(col, 0.18), hoverinfo: "skip", showlegend: false, legendgroup: key,
          name: esc(name + " (band: min–max)") });
        traces.push({ x: g.x, y: g.median, type: "scatter", mode: "lines", name: esc(name),
          line: { width: 3, color: col, dash: dashOf(r0) }, legendgroup: key, customdata: g.n,
          hovertemplate: `${esc(name)}<br>%{x:,.0f}: %{y:.1f} (n=%{customdata})<extra></extra>` });
      }
    }
    for (const r of runs) {
      const d = state.data[r.id];
      if (!d) continue;
      const xs = xCol(r.id);
      const col = colorOf(r);
      const inGroup = grouped.has(r.id);
      const lg = inGroup ? r.group : r.id;
      if (state.raw && d.points.ret.length) {
        const px = [], py = [];
        const n = d.points.ret.length;
        const stride = Math.max(1, Math.ceil(n / MAX_POINTS));
        for (let i = 0; i < n; i += stride) {
          const row = d.points.row[i];
          const x1 = xs[row];
          if (x1 === null || x1 === undefined) continue;
          const x0 = row > 0 && xs[row - 1] !== null ? xs[row - 1] : 0;
          px.push(x0 + d.points.frac[i] * (x1 - x0));
          py.push(d.points.ret[i]);
        }
        traces.push({ x: px, y: py, type: "scatter", mode: "markers", name: esc(r.label + " (episodes)"),
          marker: { size: 4, color: col, opacity: 0.22 }, showlegend: false, legendgroup: lg,
          hovertemplate: `${esc(r.label)}<br>episode return %{y:.1f}<extra></extra>` });
      }
      traces.push({ x: xs, y: d.cols.ret_smooth, type: "scatter", mode: "lines", name: esc(r.label),
        line: { width: inGroup ? 1 : 2.2, color: col, dash: dashOf(r) }, opacity: inGroup ? 0.45 : 1,
        showlegend: !inGroup, legendgroup: lg, connectgaps: true,
        hovertemplate: `${esc(r.label)}<br>%{x:,.0f}: %{y:.1f}<extra>mean of last ${state.smooth}</extra>` });
    }
    return traces;
  }

  function renderReturns(runs) {
    const host = $("return-plots");
    const envs = [...new Set(runs.map((r) => r.env))].sort();
    $("eff-hint").textContent = `episode return vs ${X_TITLES[state.x].toLowerCase()}: line = mean of the last ${state.smooth} episodes` +
      (state.raw ? ", dots = single episodes" : "") + (state.groupSeeds ? ", bold = median of seeds with min–max band" : "");
    if (!envs.length) {
      host.innerHTML = `<div class="empty" id="return-empty">${esc(emptyText())}</div>`;
      return;
    }
    const empty = $("return-empty");
    if (empty) empty.remove();
    // Create and remove the per-env divs first, so each plot is drawn at its final width.
    const ids = envs.map((env) => "plot-return-" + env.replace(/[^A-Za-z0-9_-]/g, "_"));
    let reflowed = false;
    for (const div of [...host.querySelectorAll(".plot-return")]) {
      if (!ids.includes(div.id)) { if (window.Plotly) Plotly.purge(div); div.remove(); reflowed = true; }
    }
    envs.forEach((env, k) => {
      if ($(ids[k])) return;
      const div = document.createElement("div");
      div.id = ids[k]; div.className = "plot plot-return"; div.dataset.env = env;
      host.appendChild(div);
      reflowed = true;
    });
    envs.forEach((env, k) => {
      const div = $(ids[k]);
      const traces = returnTraces(runs.filter((r) => r.env === env));
      const hasData = traces.some((t) => t.y && t.y.some((v) => v !== null && v !== undefined));
      const note = hasData ? {} : { annotations: [{ text: "no finished episodes yet", showarrow: false, xref: "paper",
        yref: "paper", x: 0.5, y: 0.5, font: { color: "#6b7480" } }] };
      draw(div, traces, baseLayout(`${env}: episode return`, X_TITLES[state.x], "Episode return", { height: 380, ...note }));
      if (reflowed && window.Plotly && div._fullLayout) Plotly.Plots.resize(div);
    });
  }

  function emptyText() {
    if (!state.runs.length) {
      return state.roots.length ? `No runs yet in ${state.roots.join(", ")}. New runs appear here as they start.` : "No runs.";
    }
    return "No run matches the filters, or none is selected (tick runs in the table below).";
  }

  function lastVal(id, col) {
    const d = state.data[id];
    const v = d ? d.cols[col] : null;
    if (!v) return null;
    for (let i = v.length - 1; i >= 0; i--) if (v[i] !== null) return v[i];
    return null;
  }

  function reuseRuns(runs) {
    // On-policy first, then off-policy, each by replay ratio: the contrast reads top to bottom.
    const rank = (r) => (r.on_policy === true ? 0 : r.on_policy === false ? 1 : 2);
    return runs.slice().sort((a, b) => rank(a) - rank(b) || (a.replay_ratio || 0) - (b.replay_ratio || 0) || a.label.localeCompare(b.label));
  }
  const kindOf = (r) => (r.on_policy === true ? "on-policy" : r.on_policy === false ? "off-policy" : "?");

  function renderReuse(runs) {
    const sorted = reuseRuns(runs).filter((r) => r.replay_ratio !== null && r.replay_ratio !== undefined);
    const labels = sorted.map((r) => esc(`${r.label} · ${kindOf(r)}`));
    const h = Math.max(300, 90 + 30 * sorted.length);
    if (!sorted.length) {
      draw($("plot-reuse-ratio"), [], emptyLayout("Replay ratio (samples trained / env steps)", "uses per env step (log)", "", "no runs with samples_trained"));
      draw($("plot-reuse-hist"), [], emptyLayout("Uses per transition", "times a transition was sampled", "", "no runs selected"));
      return;
    }
    // Ratio bars: one trace, bars colored by algorithm.
    const ratio = {
      type: "bar", orientation: "h", name: "replay ratio", y: labels, x: sorted.map((r) => r.replay_ratio),
      marker: { color: sorted.map((r) => colorOf(r)) },
      text: sorted.map((r) => fmt(r.replay_ratio, r.replay_ratio < 10 ? 1 : 0) + "×"), textposition: "outside",
      cliponaxis: false,
      hovertemplate: "%{y}<br>each env step is trained on %{x:.2f} times on average<extra></extra>",
    };
    // Model samples (Dyna-style learners): transitions the learner drew from its learned model,
    // per env step, as their own bar beside the real data's reuse.
    const withModel = sorted.filter((r) => r.model_ratio);
    const model = {
      type: "bar", orientation: "h", name: "model samples", y: withModel.map((r) => esc(`${r.label} · ${kindOf(r)}`)),
      x: withModel.map((r) => r.model_ratio), marker: { color: "#9ca3af", pattern: { shape: "/" } },
      text: withModel.map((r) => fmt(r.model_ratio, r.model_ratio < 10 ? 1 : 0) + "× model"), textposition: "outside",
      cliponaxis: false,
      hovertemplate: "%{y}<br>%{x:.2f} model-generated samples per env step<extra></extra>",
    };
    const maxR = Math.max(...sorted.map((r) => Math.max(r.replay_ratio || 1, r.model_ratio || 0)), 1);
    const ticks = [];
    for (let d = 0.1; d <= maxR * 3; d *= 10) for (const m of [1, 2, 5]) if (d * m <= maxR * 3 && d * m >= 0.5) ticks.push(+(d * m).toPrecision(2));
    // A line between the on-policy and off-policy rows (rows are sorted on-policy first).
    const split = sorted.findIndex((r) => r.on_policy !== true);
    const splitAt = split > 0 ? split - 0.5 : null;
    draw($("plot-reuse-ratio"), withModel.length ? [ratio, model] : [ratio], baseLayout("Replay ratio (samples trained / env steps)",
      "uses per env step (log scale)", "", {
        height: h, margin: { l: 8, r: 40, t: 40, b: 48 }, showlegend: withModel.length > 0, barmode: "group",
        xaxis: { title: { text: "uses per env step (log scale)" }, type: "log", range: [-0.3, Math.log10(maxR * 3)],
          gridcolor: "#eef0f3", tickvals: ticks, ticktext: ticks.map((t) => t + "×") },
        yaxis: { automargin: true, title: { text: "" } },
        shapes: [{ type: "line", x0: 1, x1: 1, yref: "paper", y0: 0, y1: 1, line: { color: "#9ca3af", dash: "dot", width: 1 } }]
          .concat(splitAt === null ? [] : [splitLine(splitAt)]),
      }));
    // Uses-per-transition heatmap: one row per run, one column per uses bin.
    const bins = state.usesBins.length ? state.usesBins : (STATIC ? STATIC.uses_bins : []);
    const z = [], text = [], meanX = [], meanY = [], meanText = [], noCounts = [];
    sorted.forEach((r, k) => {
      const f = r.reuse && r.reuse.fractions;
      z.push(f ? f.map((v) => (v > 0 ? v : null)) : bins.map(() => null));
      text.push(f ? f.map((v) => (v >= 0.005 ? Math.round(v * 100) + "%" : "")) : bins.map(() => ""));
      if (!f) {
        noCounts.push({ x: (bins.length - 1) / 2, y: k, xref: "x", yref: "y", showarrow: false,
          text: r.framework === "rllib" ? "RLlib does not count uses per transition: mean only" : "no per-transition counts: mean only",
          font: { size: 11, color: "#6b7480" } });
      }
      const m = r.replay_ratio;
      // The mean sits on the row's top edge, so it does not hide the cell's percentage.
      if (m !== null && m !== undefined) { meanX.push(binPos(m)); meanY.push(k + 0.42); meanText.push(labels[k] + "<br>mean uses " + fmt(m, 2)); }
    });
    const rowsY = sorted.map((_, k) => k);
    const heat = {
      type: "heatmap", name: "share of transitions", x: bins.map((_, j) => j), y: rowsY, z, text,
      texttemplate: "%{text}", textfont: { size: 10 }, zmin: 0, zmax: 1, xgap: 1, ygap: 2,
      colorscale: [[0, "#e8f0fb"], [0.15, "#9ecae1"], [0.5, "#3182bd"], [1, "#08306b"]],
      colorbar: { title: { text: "share" }, tickformat: ".0%", thickness: 10, len: 0.8 },
      hovertemplate: "%{customdata}: %{z:.1%} of transitions<extra></extra>",
      customdata: sorted.map((_, k) => bins.map((b) => `${labels[k]}<br>used ${b} times`)), hoverongaps: false,
    };
    const mean = {
      type: "scatter", mode: "markers", name: "mean = replay ratio", x: meanX, y: meanY, customdata: meanText,
      marker: { symbol: "triangle-down", size: 11, color: "#dc2626", line: { width: 1, color: "#fff" } },
      hovertemplate: "%{customdata}<extra></extra>",
    };
    draw($("plot-reuse-hist"), [heat, mean], baseLayout("Uses per transition (share of collected transitions)",
      "times a transition was sampled for training", "", {
        height: h, margin: { l: 8, r: 16, t: 40, b: 60 },
        xaxis: { title: { text: "times a transition was sampled for training" }, tickvals: bins.map((_, j) => j), ticktext: bins,
          tickangle: -45, tickfont: { size: 10 },
          range: [-0.5, bins.length - 0.5], showgrid: false },
        yaxis: { automargin: true, title: { text: "" }, showgrid: false, tickvals: rowsY, ticktext: labels,
          range: [-0.5, sorted.length - 0.5 + 0.1], zeroline: false },
        showlegend: true,
        annotations: noCounts,
        shapes: splitAt === null ? [] : [splitLine(splitAt)],
      }));
  }

  function splitLine(y) {
    return { type: "line", xref: "paper", x0: 0, x1: 1, y0: y, y1: y, line: { color: "#6b7480", width: 1.5, dash: "dash" } };
  }

  function binPos(v) {
    // Fractional column of a mean use count (columns 0..10 exact, then doubling ranges).
    const edges = [[11, 15], [16, 31], [32, 63], [64, 127], [128, 255]];
    if (v <= 10) return v;
    for (let j = 0; j < edges.length; j++) {
      const [lo, hi] = edges[j];
      if (v <= hi + 1) return 11 + j - 0.5 + (v - lo + 0.5) / (hi - lo + 1);
    }
    return 16;
  }

  function lineTraces(runs, col, opts) {
    const traces = [];
    for (const r of runs) {
      const d = state.data[r.id];
      if (!d || !(d.cols[col] || []).some((v) => v !== null)) continue;
      const c = colorOf(r);
      traces.push({ x: xCol(r.id), y: d.cols[col], type: "scatter", mode: "lines", name: esc(r.label), legendgroup: r.id,
        line: { color: c, width: 2, dash: dashOf(r) }, connectgaps: true,
        hovertemplate: `${esc(r.label)}<br>%{y:${(opts && opts.format) || ",.1f"}}<extra></extra>` });
      if (opts && opts.workers) {
        const ws = d.cols.worker_sps || [];
        const nw = ws.reduce((m, w) => Math.max(m, w ? w.length : 0), 0);
        for (let k = 0; k < nw; k++) {
          traces.push({ x: xCol(r.id), y: ws.map((w) => (w && w[k] !== undefined ? w[k] : null)), type: "scatter", mode: "lines",
            name: esc(`${r.label} · worker ${k}`), legendgroup: r.id, showlegend: false,
            line: { color: c, width: 1, dash: "dot" }, opacity: 0.7,
            hovertemplate: `${esc(r.label)} worker ${k}<br>%{y:,.1f} steps/s<extra></extra>` });
        }
      }
    }
    return traces;
  }

  function workerCountTraces(runs) {
    const out = [];
    for (const r of runs) {
      const d = state.data[r.id];
      if (!d || !(d.cols.workers || []).some((v) => v !== null)) continue;
      out.push({ x: xCol(r.id), y: d.cols.workers, type: "scatter", mode: "lines", yaxis: "y2",
        name: esc(`${r.label} · workers`), legendgroup: r.id, showlegend: false,
        line: { color: colorOf(r), width: 1.5, dash: "dash", shape: "hv" }, connectgaps: true,
        hovertemplate: `${esc(r.label)}<br>%{y} workers alive<extra></extra>` });
    }
    return out;
  }

  function workersCell(r) {
    // Configured count (N, MIN:MAX or auto), then the count over time as a step sparkline.
    const d = state.data[r.id];
    const ws = ((d && d.cols.workers) || []).filter((v) => v !== null);
    const conf = esc(r.workers ?? "–");
    if (ws.length < 2) return `${conf}`;
    const lo = Math.min(...ws), hi = Math.max(...ws), w = 64, h = 16;
    const span = Math.max(hi, 1);
    let path = "";
    ws.forEach((v, k) => {
      const x = (k / (ws.length - 1)) * w, y = h - 1 - (v / span) * (h - 2);
      path += k === 0 ? `M${x.toFixed(1)},${y.toFixed(1)}` : `H${x.toFixed(1)}V${y.toFixed(1)}`;
    });
    const now = ws[ws.length - 1];
    return `${conf} <svg class="spark" width="${w}" height="${h}" role="img" aria-label="workers over time: ${lo} to ${hi}, now ${now}">` +
      `<title>workers alive over time: min ${lo}, max ${hi}, now ${now}</title>` +
      `<path d="${path}" fill="none" stroke="${colorOf(r)}" stroke-width="1.5"/></svg> ${esc(now)}`;
  }

  function renderThroughput(runs) {
    const xt = X_TITLES[state.x];
    const panels = [
      ["plot-sps", "env_steps_per_s", "Env steps/s (total solid, per worker dotted; workers alive dashed, right axis)", "env steps/s", { workers: true, count: true }],
      ["plot-ups", "updates_per_s", "Learner updates/s", "gradient updates/s"],
      ["plot-lag", "policy_lag", "Policy lag (learner version − acting version)", "versions behind"],
      ["plot-replay", "replay_size", "Replay size", "transitions in replay"],
      // Learner side: the returns above are the env's own; this is what the learner added to them.
      ["plot-bonus", "bonus_mean", "Exploration bonus β/√N(φ(s')) added to sampled rewards (not in the returns)", "mean bonus per sampled transition", { format: ".3g" }],
    ];
    const EMPTY = {
      replay_size: "no off-policy (replay) run selected",
      bonus_mean: "no run with --set exploration_bonus=count selected",
    };
    for (const [id, col, title, ytitle, opts] of panels) {
      const traces = lineTraces(runs, col, opts);
      if (!traces.length) {
        draw($(id), [], emptyLayout(title, xt, ytitle, EMPTY[col] || "no data for the selected runs"));
      } else if (opts && opts.count) {
        // The worker count over time (node loss, recovery, elastic growth) on a second axis.
        const counts = workerCountTraces(runs);
        draw($(id), traces.concat(counts), baseLayout(title, xt, ytitle, {
          height: 320, margin: { l: 64, r: 56, t: 44, b: 48 },
          yaxis2: { title: { text: "workers alive" }, overlaying: "y", side: "right", rangemode: "tozero",
            dtick: 1, showgrid: false, zeroline: false },
        }));
      } else {
        draw($(id), traces, baseLayout(title, xt, ytitle, { height: 320 }));
      }
    }
  }

  // ------------------------------------------------------------------ table, filters, messages

  function renderTable() {
    const body = $("runs-table").tBodies[0];
    const rows = visibleRuns().map((r) => {
      const on = state.selected.has(r.id);
      const cfg = !r.has_config ? "–" : STATIC
        ? `<a href="#config-${esc(r.id)}" class="config-link">config</a>`
        : `<a href="api/run/${encodeURIComponent(r.id)}/config" target="_blank" class="config-link">config.yaml</a>`;
      const reuseCls = r.on_policy === true ? "reuse-on" : r.on_policy === false ? "reuse-off" : "";
      const why = r.status_reason ? ` title="${esc(r.status_reason)}"` : "";
      return `<tr data-id="${esc(r.id)}" class="${on ? "" : "off"}">
        <td><input type="checkbox" class="sel" ${on ? "checked" : ""} aria-label="show ${esc(r.label)}"></td>
        <td title="${esc(r.path)}"><span class="swatch" style="background:${colorOf(r)}"></span>${r.sweep ? `<span class="sweep">${esc(r.sweep)}/</span>` : ""}${esc(r.name)}</td>
        <td>${esc(r.algo)}</td><td>${esc(r.env)}</td><td>${esc(r.framework)}</td>
        <td class="workers">${workersCell(r)}</td><td>${esc(r.seed ?? "–")}</td>
        <td><span class="badge ${esc(r.status)}"${why}>${esc(r.status)}</span></td>
        <td class="num">${fmtSteps(r.env_steps)}</td>
        <td class="num">${fmt(r.best_return, 1)}</td>
        <td class="num ${reuseCls}" title="${esc(kindOf(r))}">${r.replay_ratio === null || r.replay_ratio === undefined ? "–" : fmt(r.replay_ratio, 1) + "×"}</td>
        <td>${cfg}</td></tr>`;
    });
    body.innerHTML = rows.join("") || `<tr><td colspan="12" class="empty">${esc(emptyText())}</td></tr>`;
  }

  function fillSelect(sel, values) {
    const cur = sel.value;
    const want = ["", ...values].join("|");
    if (sel.dataset.values === want) return;
    sel.dataset.values = want;
    sel.innerHTML = `<option value="">all</option>` + values.map((v) => `<option value="${esc(v)}">${esc(v)}</option>`).join("");
    sel.value = values.includes(cur) ? cur : "";
  }

  function renderMessages() {
    const list = [];
    if (state.connected === false) list.push({ level: "error", message: "The dashboard server does not answer; retrying every 1.5 s." });
    for (const i of state.rootIssues) list.push(i);
    for (const r of state.runs) for (const i of r.issues || []) list.push(i);
    $("messages").innerHTML = list.map((i) => `<div class="msg ${esc(i.level)}">${esc(i.level)}: ${esc(i.message)}</div>`).join("");
  }

  function renderConfigs() {
    if (!STATIC) return;
    $("configs").innerHTML = state.runs.filter((r) => STATIC.configs && STATIC.configs[r.id])
      .map((r) => `<details id="config-${esc(r.id)}"><summary>${esc(r.name)} config.yaml</summary><pre>${esc(STATIC.configs[r.id])}</pre></details>`).join("");
    const openHash = () => {
      const el = location.hash && document.getElementById(decodeURIComponent(location.hash.slice(1)));
      if (el && el.tagName === "DETAILS") el.open = true;
    };
    window.addEventListener("hashchange", openHash);
    openHash();
  }

  function render() {
    state.dirty = false;
    fillSelect($("filter-env"), [...new Set(state.runs.map((r) => r.env))].sort());
    fillSelect($("filter-algo"), [...new Set(state.runs.map((r) => r.algo))].sort());
    $("roots").textContent = state.roots.join("  ");
    renderMessages();
    renderTable();
    const runs = shownRuns();
    renderReturns(runs);
    renderReuse(runs);
    renderThroughput(runs);
    document.body.dataset.rendered = String((+document.body.dataset.rendered || 0) + 1);
  }

  // ------------------------------------------------------------------ controls

  function onChange() {
    state.groupsKey = "";
    if (STATIC) { pickStaticGroups(); render(); return; }
    // Fetch what the new view needs (rows of newly shown runs, group bands) before drawing once.
    pollOnce().catch(() => {}).then(render);
  }

  function wire() {
    $("filter-env").addEventListener("change", (e) => { state.env = e.target.value; onChange(); });
    $("filter-algo").addEventListener("change", (e) => { state.algo = e.target.value; onChange(); });
    for (const b of $("x-switch").querySelectorAll("button")) {
      b.addEventListener("click", () => {
        state.x = b.dataset.x;
        for (const o of $("x-switch").querySelectorAll("button")) o.classList.toggle("on", o === b);
        onChange();
      });
    }
    $("opt-group").addEventListener("change", (e) => { state.groupSeeds = e.target.checked; onChange(); });
    $("opt-raw").addEventListener("change", (e) => { state.raw = e.target.checked; onChange(); });
    $("runs-table").addEventListener("click", (e) => {
      const tr = e.target.closest("tr[data-id]");
      if (!tr || e.target.closest("a")) return;
      const id = tr.dataset.id;
      if (state.selected.has(id)) { state.selected.delete(id); state.deselected.add(id); }
      else { state.selected.add(id); state.deselected.delete(id); }
      onChange();
    });
    $("select-all").addEventListener("click", () => { for (const r of visibleRuns()) { state.selected.add(r.id); state.deselected.delete(r.id); } onChange(); });
    $("select-none").addEventListener("click", () => { for (const r of visibleRuns()) { state.selected.delete(r.id); state.deselected.add(r.id); } onChange(); });
  }

  function start() {
    if (!window.Plotly) {
      const msg = "plotly.min.js did not load: plots cannot be drawn.";
      console.error("tandem: " + msg);
      $("messages").innerHTML = `<div class="msg error">error: ${esc(msg)}</div>`;
    }
    wire();
    if (STATIC) {
      loadStatic();
      render();
      renderConfigs();
      $("footer").textContent = `Tandem report of ${state.runs.length} runs from ${state.roots.join(", ")}.`;
    } else {
      $("footer").textContent = "Tandem dashboard: reads metrics.jsonl incrementally; leave it open during training.";
      loop();
    }
  }

  window.tandemDashboard = { state, render };
  start();
})();
