/* circuitflow viewer: draws a run's pruned attribution graph (token positions across, layers
   up), re-prunes it when the threshold sliders move, shows a node's details and its paths to
   the logits, keeps a pinned subgraph with named supernodes, and plots the influence trace,
   the influence distribution and the cumulative influence curve (and, when the run was
   analysed with a trace of influence_iteration, the series its analysis captured).

   Served live, every re-pruning is asked of the server, which runs attribution.prune; a static
   page carries the graph pruned at a grid of thresholds and its sliders step through it. */
"use strict";
(() => {
  const NS = "http://www.w3.org/2000/svg";
  const boot = JSON.parse(document.getElementById("cf-boot").textContent);
  const live = boot.mode === "live";
  const $ = (id) => document.getElementById(id);

  const state = {
    run: null,              // the run panel's data
    plots: null,            // the plots' data
    nodes: new Map(),       // node id -> details, kept across views
    view: null,             // the pruned graph on screen
    grid: null,             // static page: {node: [...], edge: [...]} thresholds
    pinned: [],             // pinned node ids, in the order pinned
    supernodes: [],         // [name, member id, ...] each
    selected: null,         // the clicked node id
    saved: [],              // saved subgraphs: {name, pinnedIds, supernodes, clickedId}
    request: 0,             // number of the newest re-pruning asked for
    movedAt: null,          // when a slider last moved (performance.now())
  };

  // ----------------------------------------------------------------------------- helpers

  function svg(tag, attrs, parent) {
    const node = document.createElementNS(NS, tag);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
    if (parent) parent.appendChild(node);
    return node;
  }

  function html(tag, attrs, text, parent) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
    if (text !== undefined && text !== null) node.textContent = text;
    if (parent) parent.appendChild(node);
    return node;
  }

  function maxOf(items, value) {
    let best = 0;
    for (const item of items) best = Math.max(best, Math.abs(value(item)));
    return best;
  }

  // A view's links as [source id, target id, weight] (the server sends parallel arrays).
  function linkTriples(view) {
    const {source, target, weight} = view.links;
    const triples = new Array(source.length);
    for (let k = 0; k < source.length; k++) {
      triples[k] = [view.node_ids[source[k]], view.node_ids[target[k]], weight[k]];
    }
    return triples;
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
    return node;
  }

  function num(value, digits = 3) {
    if (value === null || value === undefined) return "–";
    if (value !== 0 && (Math.abs(value) < 1e-3 || Math.abs(value) >= 1e4)) {
      return value.toExponential(digits - 1);
    }
    return Number(value.toPrecision(digits)).toString();
  }

  function status(text, isError) {
    const line = $("status");
    line.textContent = text;
    line.classList.toggle("error", Boolean(isError));
    if (isError) console.warn(text);
  }

  async function getJSON(url, options) {
    const reply = await fetch(url, options);
    const body = await reply.json();
    if (!reply.ok) throw new Error(body.error || reply.statusText);
    return body;
  }

  // Node ids: features L_F_P, errors L_-1_P, tokens E_T_P, logits (n_layers+1)_T_P.
  function describeId(id) {
    const node = state.nodes.get(id);
    if (node) return describe(node);
    const [a, b, c] = id.split("_");
    if (a === "E") return `emb @${c}`;
    if (b === "-1") return `error L${a} @${c}`;
    if (Number(a) === state.run.n_layers + 1) return `logit ${b}`;
    return `L${a} #${b} @${c}`;
  }

  function describe(node) {
    const token = JSON.stringify(node.token);
    if (node.kind === "feature") {
      return `L${node.layer} #${node.feature} @${node.pos} ${token}` +
        (node.label ? ` · ${node.label}` : "");
    }
    if (node.kind === "error") return `error L${node.layer} @${node.pos} ${token}`;
    if (node.kind === "token") return `emb ${token} @${node.pos}`;
    return `logit ${token} p=${num(node.prob)}`;
  }

  // ---------------------------------------------------------------------------- loading

  async function start() {
    try {
      const overview = live ? await getJSON("/api/overview") : boot.data;
      state.run = overview.run;
      state.plots = overview.plots;
      if (!live) {
        state.grid = boot.data.grid;
        for (const [id, node] of Object.entries(boot.data.nodes)) state.nodes.set(id, node);
      }
      state.saved = live ? await getJSON("/api/subgraphs") : boot.data.subgraphs;
      setUpSliders();
      drawRunPanel();
      setUpSubgraphPanel();
      await refresh();
      window.addEventListener("resize", () => drawPlots());
    } catch (error) {
      status(`could not load the run: ${error.message}`, true);
    }
  }

  function thresholds() {
    const node = $("node-threshold").value;
    const edge = $("edge-threshold").value;
    if (live) return [node, edge];
    return [state.grid.node[Number(node)], state.grid.edge[Number(edge)]];
  }

  async function loadView(node, edge) {
    if (live) return getJSON(`/api/prune?node_threshold=${node}&edge_threshold=${edge}`);
    const i = state.grid.node.indexOf(node);
    const j = state.grid.edge.indexOf(edge);
    return boot.data.views[`${i}|${j}`];
  }

  async function refresh() {
    const number = ++state.request;
    const [node, edge] = thresholds();
    status("pruning…");
    try {
      const asked = performance.now();
      const view = await loadView(node, edge);
      if (number !== state.request) return; // a newer slider position is on its way
      const received = performance.now();
      for (const [id, details] of Object.entries(view.nodes || {})) state.nodes.set(id, details);
      view.linkList = view.linkList || linkTriples(view);
      state.view = view;
      drawGraph();
      drawSubgraph();
      drawPlots();
      const drawn = performance.now();
      const line = $("status");
      line.dataset.fetchMs = String(Math.round(received - asked));
      line.dataset.drawMs = String(Math.round(drawn - received));
      // From the slider's last move to the frame that shows the new graph.
      const moved = state.movedAt;
      requestAnimationFrame(() => setTimeout(() => {
        if (moved) line.dataset.latencyMs = String(Math.round(performance.now() - moved));
      }, 0));
      const seconds = view.seconds === undefined ? "" : ` in ${num(view.seconds, 2)} s`;
      status(live ? `pruned by attribution.prune${seconds}; received in ` +
        `${num((received - asked) / 1000, 2)} s, drawn in ${num((drawn - received) / 1000, 2)} s`
        : "static page: precomputed grid");
    } catch (error) {
      status(`re-pruning failed: ${error.message}`, true);
    }
  }

  let pending = null;
  function schedule() {
    clearTimeout(pending);
    pending = setTimeout(refresh, 120);
  }

  function setUpSliders() {
    const run = state.run;
    const pairs = [["node-threshold", run.node_threshold, "node"],
                   ["edge-threshold", run.edge_threshold, "edge"]];
    for (const [id, value, which] of pairs) {
      const slider = $(id);
      if (live) {
        slider.value = String(value);
      } else {
        slider.min = "0";
        slider.max = String(state.grid[which].length - 1);
        slider.step = "1";
        slider.value = String(state.grid[which].indexOf(value));
      }
      const show = () => {
        const [node, edge] = thresholds();
        $(`${id}-value`).textContent = which === "node" ? node : edge;
      };
      show();
      slider.addEventListener("input", () => {
        state.movedAt = performance.now();
        show();
        schedule();
      });
    }
  }

  // ------------------------------------------------------------------------------ graph

  const KIND_ORDER = {token: 0, feature: 1, error: 2, logit: 3};
  const MAX_WIDTH = 2600;
  const MAX_DRAWN_LINKS = 8000;

  function layout(nodes) {
    const run = state.run;
    const rows = run.n_layers + 2; // embeddings, each layer, logits
    const rowOf = (n) => (n.kind === "token" ? 0 : n.kind === "logit" ? rows - 1 : n.layer + 1);
    const cells = new Map();
    for (const node of nodes) {
      const key = `${rowOf(node)}|${node.pos}`;
      if (!cells.has(key)) cells.set(key, []);
      cells.get(key).push(node);
    }
    const widest = new Array(run.n_pos).fill(1);
    for (const [key, members] of cells) {
      const pos = Number(key.split("|")[1]);
      widest[pos] = Math.max(widest[pos], members.length);
    }
    // Nodes 17 px apart, closer when that would make the graph wider than about two screens
    // (a dense graph keeps dozens of features at one place).
    const slots = widest.reduce((sum, n) => sum + n, 0);
    const spacing = Math.max(3, Math.min(17, (MAX_WIDTH - 80 * run.n_pos) / slots));
    const left = 58, top = 16, bottom = 70;
    const rowHeight = Math.max(36, Math.min(72, 600 / rows));
    const columns = [];
    let x = left;
    for (let pos = 0; pos < run.n_pos; pos++) {
      const width = Math.max(64, widest[pos] * spacing + 14);
      columns.push({x, width});
      x += width;
    }
    const place = new Map();
    for (const [key, members] of cells) {
      const [row, pos] = key.split("|").map(Number);
      members.sort((a, b) => KIND_ORDER[a.kind] - KIND_ORDER[b.kind] ||
        (a.feature ?? a.token_id ?? 0) - (b.feature ?? b.token_id ?? 0));
      const centre = columns[pos].x + columns[pos].width / 2;
      const y = top + (rows - 1 - row) * rowHeight + rowHeight / 2;
      members.forEach((node, k) => {
        place.set(node.id, {x: centre + (k - (members.length - 1) / 2) * spacing, y});
      });
    }
    return {place, columns, rows, rowHeight, top, left,
            width: x + 12, height: top + rows * rowHeight + bottom};
  }

  function drawAxes(root, geometry) {
    const run = state.run;
    const axis = svg("g", {class: "axis"}, root);
    for (let row = 0; row < geometry.rows; row++) {
      const y = geometry.top + (geometry.rows - 1 - row) * geometry.rowHeight +
        geometry.rowHeight / 2;
      svg("line", {x1: geometry.left - 6, x2: geometry.width, y1: y, y2: y}, axis);
      const name = row === 0 ? "emb" : row === geometry.rows - 1 ? "logit" : `L${row - 1}`;
      svg("text", {x: 6, y: y + 4}, axis).textContent = name;
    }
    const base = geometry.top + geometry.rows * geometry.rowHeight + 14;
    geometry.columns.forEach((column, pos) => {
      const x = column.x + column.width / 2;
      const label = svg("text", {x, y: base, class: "token-label", "text-anchor": "end",
        transform: `rotate(-30 ${x} ${base})`}, axis);
      label.textContent = `${JSON.stringify(run.prompt_tokens[pos] ?? "")} ${pos}`;
    });
  }

  function shape(node, size, parent) {
    const cls = `shape kind-${node.kind}`;
    if (node.kind === "feature") return svg("circle", {r: size, class: cls}, parent);
    if (node.kind === "error") {
      return svg("rect", {x: -size, y: -size, width: 2 * size, height: 2 * size, class: cls},
                 parent);
    }
    if (node.kind === "token") {
      return svg("rect", {x: -size * 1.4, y: -size, width: size * 2.8, height: size * 2, rx: 3,
                          class: cls}, parent);
    }
    const s = size * 1.3;
    return svg("path", {d: `M0 ${-s} L${s} 0 L0 ${s} L${-s} 0 Z`, class: cls}, parent);
  }

  function drawGraph() {
    const root = clear($("graph"));
    const view = state.view;
    const nodes = view.node_ids.map((id) => state.nodes.get(id));
    const geometry = layout(nodes);
    root.setAttribute("width", geometry.width);
    root.setAttribute("height", geometry.height);
    root.setAttribute("viewBox", `0 0 ${geometry.width} ${geometry.height}`);
    drawAxes(root, geometry);

    state.geometry = geometry;
    state.maxWeight = Math.max(1e-12, maxOf(view.linkList, (l) => l[2]));
    const nonLogit = nodes.filter((n) => n.kind !== "logit");
    const maxInfluence = Math.max(1e-12, maxOf(nonLogit, (n) => n.influence));
    const nodeLayer = svg("g", {class: "nodes"}, root);
    for (const node of nodes) {
      const at = geometry.place.get(node.id);
      const share = node.kind === "logit" ? node.prob : node.influence / maxInfluence;
      const size = 3.5 + 6 * Math.sqrt(Math.max(0, share));
      const group = svg("g", {
        class: "node", "data-id": node.id, "data-kind": node.kind,
        transform: `translate(${at.x.toFixed(1)} ${at.y.toFixed(1)})`,
      }, nodeLayer);
      shape(node, size, group);
      svg("circle", {r: Math.max(size + 3, 8), class: "hit"}, group);
      group.addEventListener("mouseenter", () => hover(node.id));
      group.addEventListener("mouseleave", () => hover(null));
      group.addEventListener("click", (event) => {
        if (event.ctrlKey || event.metaKey || event.shiftKey) togglePin(node.id);
        else select(node.id === state.selected ? null : node.id);
      });
    }
    root.dataset.nodeThreshold = String(view.node_threshold);
    root.dataset.edgeThreshold = String(view.edge_threshold);
    root.dataset.nodes = String(nodes.length);
    const count = $("node-count");
    const drawnLinks = view.linkList.length > MAX_DRAWN_LINKS
      ? ` (the ${MAX_DRAWN_LINKS} strongest drawn)` : "";
    count.textContent = `${nodes.length} nodes · ${view.linkList.length} links${drawnLinks}`;
    count.dataset.nodes = String(nodes.length);
    count.dataset.links = String(view.linkList.length);
    markNodes();
    highlight(state.selected && state.nodes.has(state.selected) ? state.selected : null);
  }

  function markNodes() {
    const pinned = new Set(state.pinned);
    for (const group of $("graph").querySelectorAll(".node")) {
      group.classList.toggle("pinned", pinned.has(group.dataset.id));
      group.classList.toggle("selected", group.dataset.id === state.selected);
    }
  }

  // The node and everything it reaches: every kept feature and error node has a kept
  // outgoing link, so everything reached lies on a path to the logits.
  function downstream(id) {
    const view = state.view;
    if (!view.out) {
      view.out = new Map();
      for (const [source, target] of view.linkList) {
        if (!view.out.has(source)) view.out.set(source, []);
        view.out.get(source).push(target);
      }
    }
    const out = view.out;
    const seen = new Set([id]);
    const stack = [id];
    while (stack.length) {
      for (const next of out.get(stack.pop()) || []) {
        if (!seen.has(next)) { seen.add(next); stack.push(next); }
      }
    }
    return seen;
  }

  function highlight(id) {
    const root = $("graph");
    const onPath = id ? downstream(id) : new Set();
    root.classList.toggle("focus", Boolean(id));
    for (const group of root.querySelectorAll(".node")) {
      group.classList.toggle("on-path", onPath.has(group.dataset.id));
    }
    drawLinks(id ? onPath : null);
  }

  // At most MAX_DRAWN_LINKS links are drawn, the strongest (those on the focused node's paths
  // first): a dense graph keeps 10^5, which take seconds to paint and cannot be told apart.
  function drawable(onPath) {
    const view = state.view;
    if (view.linkList.length <= MAX_DRAWN_LINKS) return view.linkList;
    if (!view.strongest) {
      view.strongest = [...view.linkList].sort((a, b) => Math.abs(b[2]) - Math.abs(a[2]));
    }
    if (!onPath) return view.strongest.slice(0, MAX_DRAWN_LINKS);
    const lit = view.strongest.filter(([s, t]) => onPath.has(s) && onPath.has(t));
    const rest = view.strongest.filter(([s, t]) => !(onPath.has(s) && onPath.has(t)));
    return lit.concat(rest).slice(0, MAX_DRAWN_LINKS);
  }

  // Links go on a canvas under the nodes' SVG: a dense graph keeps 10^5 of them. Strokes are
  // batched by sign, width and emphasis; the strongest are drawn last.
  function drawLinks(onPath) {
    const canvas = $("links");
    const geometry = state.geometry;
    const ratio = window.devicePixelRatio || 1;
    canvas.width = Math.ceil(geometry.width * ratio);
    canvas.height = Math.ceil(geometry.height * ratio);
    canvas.style.width = `${geometry.width}px`;
    canvas.style.height = `${geometry.height}px`;
    const context = canvas.getContext("2d");
    context.scale(ratio, ratio);
    context.lineCap = "round";
    const widths = 8;
    const batches = new Map();
    let lit = 0;
    for (const [source, target, weight] of drawable(onPath)) {
      const a = geometry.place.get(source);
      const b = geometry.place.get(target);
      if (!a || !b) continue;
      const emphasis = onPath ? (onPath.has(source) && onPath.has(target) ? 2 : 0) : 1;
      if (emphasis === 2) lit++;
      const width = Math.min(widths - 1, Math.floor(widths * Math.abs(weight) / state.maxWeight));
      const key = emphasis * 100 + width * 2 + (weight >= 0 ? 1 : 0);
      if (!batches.has(key)) batches.set(key, []);
      batches.get(key).push([a, b]);
    }
    const style = getComputedStyle(document.documentElement);
    const colours = [style.getPropertyValue("--neg").trim(), style.getPropertyValue("--pos").trim()];
    const alpha = [0.05, 0.45, 0.85];
    for (const key of [...batches.keys()].sort((x, y) => x - y)) {
      const emphasis = Math.floor(key / 100);
      const width = Math.floor((key % 100) / 2);
      context.beginPath();
      for (const [a, b] of batches.get(key)) {
        const mid = (a.y + b.y) / 2 + (a.y === b.y ? -24 : 0);
        context.moveTo(a.x, a.y);
        context.bezierCurveTo(a.x, mid, b.x, mid, b.x, b.y);
      }
      context.strokeStyle = colours[key % 2];
      context.globalAlpha = alpha[emphasis];
      context.lineWidth = 0.4 + 3.6 * (width + 0.5) / widths;
      context.stroke();
    }
    canvas.dataset.links = String(Math.min(state.view.linkList.length, MAX_DRAWN_LINKS));
    canvas.dataset.onPath = String(lit);
  }

  function hover(id) {
    const shown = id || state.selected;
    highlight(shown);
    showDetails(shown);
  }

  function select(id) {
    state.selected = id;
    markNodes();
    hover(id);
  }

  // ---------------------------------------------------------------------------- details

  function showDetails(id, force = false) {
    const panel = $("details");
    const node = id ? state.nodes.get(id) : null;
    // The same node again (the pointer passing on to the panel): keep what is being typed.
    if (!force && node && panel.dataset.id === node.id) return;
    const body = clear($("details-body"));
    panel.classList.toggle("empty", !node);
    panel.dataset.id = node ? node.id : "";
    if (!node) { body.textContent = "Hover a node."; return; }
    html("div", {class: "node-title"}, `${node.kind} ${node.id}`, body);
    const table = html("table", {}, null, body);
    const rows = [
      ["layer", node.kind === "token" ? "embedding" : node.kind === "logit" ? "output" : node.layer],
      ["feature", node.feature],
      ["position", node.pos],
      ["token", JSON.stringify(node.token)],
      ["activation", node.activation === null ? "–" : num(node.activation, 4)],
      ["influence", num(node.influence, 4)],
      ["cumulative", num(node.cumulative, 4)],
      ["probability", node.prob === null ? null : num(node.prob, 3)],
      ["label", node.label],
    ];
    for (const [name, value] of rows) {
      if (value === null || value === undefined || value === "") continue;
      const row = html("tr", {}, null, table);
      html("td", {}, name, row);
      html("td", {}, String(value), row);
    }
    if (node.dashboard) dashboard(body, node.dashboard);
    if (live && node.kind === "feature") labelEditor(body, node);
    linkList(body, "strongest inputs", node.inputs);
    linkList(body, "strongest outputs", node.outputs);
    const pinned = state.pinned.includes(node.id);
    const button = html("button", {type: "button", id: "pin-button"}, pinned ? "Unpin" : "Pin",
                        body);
    button.addEventListener("click", () => togglePin(node.id));
  }

  // A feature's dashboard: how often it fires, its top contexts (the activating token marked)
  // and the tokens its decoder promotes through the unembedding.
  function dashboard(parent, dash) {
    html("div", {class: "list-title"},
         `fires on ${num(100 * dash.frequency, 3)}% of tokens, max ${num(dash.max_activation, 3)}`,
         parent);
    const list = html("ul", {class: "contexts", id: "contexts"}, null, parent);
    for (const context of dash.contexts) {
      const item = html("li", {}, null, list);
      context.tokens.forEach((token, i) => {
        const span = html("span", {class: i === context.marked ? "marked" : ""}, token, item);
        if (i === context.marked) span.title = `activation ${num(context.activation, 4)}`;
      });
    }
    if (dash.promoted.length) {
      html("div", {class: "list-title"}, `promotes ${dash.promoted.join(" ·")}`, parent);
    }
  }

  // Live pages label a feature: the label is stored in the catalog (table labels) and shows in
  // exports; every node of the feature shows it at once.
  function labelEditor(parent, node) {
    const row = html("div", {class: "row"}, null, parent);
    const input = html("input", {type: "text", id: "label-input", maxlength: "200",
                                 placeholder: "label this feature"}, null, row);
    input.value = node.label || "";
    const button = html("button", {type: "button", id: "label-save"}, "Label", row);
    const line = html("div", {class: "status-line", id: "label-status"}, null, parent);
    button.addEventListener("click", async () => {
      try {
        const saved = await getJSON("/api/labels", {
          method: "POST", headers: {"Content-Type": "application/json"},
          body: JSON.stringify({layer: node.layer, feature: node.feature, label: input.value}),
        });
        for (const other of state.nodes.values()) {
          if (other.kind === "feature" && other.layer === node.layer &&
              other.feature === node.feature) other.label = saved.label;
        }
        line.textContent = `labelled by ${saved.author}`;
        line.dataset.saved = saved.label;
        line.classList.remove("error");
      } catch (error) {
        line.textContent = `not labelled: ${error.message}`;
        line.classList.add("error");
      }
    });
  }

  function linkList(parent, title, links) {
    html("div", {class: "list-title"}, title, parent);
    const list = html("ul", {class: "links-list"}, null, parent);
    if (!links.length) html("li", {}, "none", list);
    for (const [id, weight] of links) {
      const item = html("li", {"data-id": id}, null, list);
      html("span", {}, describeId(id), item);
      html("span", {class: `num ${weight >= 0 ? "pos" : "neg"}`}, num(weight, 3), item);
      item.addEventListener("click", () => { if (state.nodes.has(id)) select(id); });
    }
  }

  // ---------------------------------------------------------------------------- run panel

  function drawRunPanel() {
    const run = state.run;
    $("prompt").textContent = run.prompt;
    document.title = `circuitflow: ${run.prompt}`;
    const body = clear($("run-details"));
    const table = html("table", {}, null, body);
    const rows = [
      ["run", run.run_id],
      ["model", `${run.model} · ${run.transcoders}`],
      ["tokens", run.prompt_tokens.length],
      ["features", `${run.n_features} nodes of ${run.n_active_features} active`],
      ["replacement", num(run.replacement_score, 3)],
      ["completeness", num(run.completeness_score, 3)],
      ["thresholds", `node ${run.node_threshold}, edge ${run.edge_threshold} (as run)`],
    ];
    for (const [name, value] of rows) {
      const row = html("tr", {}, null, table);
      html("td", {}, name, row);
      html("td", {}, String(value), row);
    }
    html("div", {class: "list-title"}, "target logits", body);
    const logits = html("table", {id: "logits"}, null, body);
    for (const logit of run.logits) {
      const row = html("tr", {}, null, logits);
      html("td", {}, JSON.stringify(logit.token), row);
      html("td", {class: "num"}, num(logit.prob, 3), row);
      const cell = html("td", {}, null, row);
      html("span", {class: "bar", style: `width:${Math.round(120 * logit.prob)}px`}, null, cell);
    }
  }

  // ----------------------------------------------------------------------------- subgraph

  function togglePin(id) {
    const at = state.pinned.indexOf(id);
    if (at >= 0) {
      state.pinned.splice(at, 1);
      state.supernodes = state.supernodes
        .map((group) => group.filter((member, k) => k === 0 || member !== id))
        .filter((group) => group.length > 1);
    } else {
      state.pinned.push(id);
    }
    markNodes();
    showDetails(state.selected || id, true);
    drawSubgraph();
  }

  function setUpSubgraphPanel() {
    $("group-button").addEventListener("click", () => {
      const name = $("supernode-name").value.trim();
      const members = [...$("pinned-list").querySelectorAll("input:checked")]
        .map((box) => box.value);
      if (!name || !members.length) {
        saveStatus("check pinned nodes and name the supernode", true);
        return;
      }
      state.supernodes = state.supernodes
        .map((group) => group.filter((member, k) => k === 0 || !members.includes(member)))
        .filter((group) => group.length > 1);
      state.supernodes.push([name, ...members]);
      $("supernode-name").value = "";
      drawSubgraph();
    });
    $("suggest-button").addEventListener("click", suggest);
    $("save-subgraph").addEventListener("click", save);
    $("load-subgraph").addEventListener("click", () => {
      const chosen = state.saved.find((s) => s.name === $("saved-subgraphs").value);
      if (!chosen) return;
      state.pinned = [...chosen.pinnedIds];
      state.supernodes = chosen.supernodes.map((group) => [...group]);
      $("subgraph-name").value = chosen.name;
      select(chosen.clickedId || null);
      drawSubgraph();
      saveStatus(`loaded ${JSON.stringify(chosen.name)}`);
    });
    if (!live) {
      $("save-subgraph").disabled = true;
      $("suggest-button").disabled = true;
      saveStatus("static page: saving needs `circuitflow view`");
    }
    fillSaved();
  }

  function fillSaved() {
    const select = clear($("saved-subgraphs"));
    for (const saved of state.saved) html("option", {value: saved.name}, saved.name, select);
    if (!state.saved.length) html("option", {value: ""}, "no saved subgraphs", select);
  }

  function saveStatus(text, isError) {
    const line = $("save-status");
    line.textContent = text;
    line.classList.toggle("error", Boolean(isError));
  }

  // Proposed supernodes (kept features alike in what feeds them and what they feed); accepting
  // one pins its members and groups them, to be saved like any supernode.
  async function suggest() {
    const list = clear($("suggestions"));
    const [node, edge] = thresholds();
    let groups;
    try {
      groups = await getJSON(`/api/supernodes?node_threshold=${node}&edge_threshold=${edge}`);
    } catch (error) {
      saveStatus(`no suggestions: ${error.message}`, true);
      return;
    }
    if (!groups.length) html("div", {}, "no features alike enough", list);
    for (const group of groups) {
      const row = html("div", {class: "row suggestion"}, null, list);
      html("span", {}, `${group[0]}: ${group.slice(1).map(describeId).join(", ")}`, row);
      const accept = html("button", {type: "button", class: "accept"}, "Accept", row);
      accept.addEventListener("click", () => {
        const members = group.slice(1);
        for (const id of members) if (!state.pinned.includes(id)) state.pinned.push(id);
        state.supernodes = state.supernodes
          .map((g) => g.filter((member, k) => k === 0 || !members.includes(member)))
          .filter((g) => g.length > 1);
        state.supernodes.push([...group]);
        row.remove();
        markNodes();
        drawSubgraph();
      });
    }
  }

  async function save() {
    const name = $("subgraph-name").value.trim();
    if (!name) { saveStatus("name the subgraph first", true); return; }
    const body = {name, pinnedIds: state.pinned, supernodes: state.supernodes,
                  clickedId: state.selected || ""};
    try {
      state.saved = await getJSON("/api/subgraphs", {
        method: "POST", headers: {"Content-Type": "application/json"},
        body: JSON.stringify(body),
      });
      fillSaved();
      $("saved-subgraphs").value = name;
      saveStatus(`saved ${JSON.stringify(name)} (${state.pinned.length} pinned)`);
    } catch (error) {
      saveStatus(`not saved: ${error.message}`, true);
    }
  }

  // The pinned nodes, each supernode drawn as one box, with the summed weights of the shown
  // links between them.
  function drawSubgraph() {
    const list = clear($("pinned-list"));
    const grouped = new Map();
    for (const group of state.supernodes) {
      for (const member of group.slice(1)) grouped.set(member, group[0]);
    }
    if (!state.pinned.length) list.textContent = "No pinned nodes.";
    for (const id of state.pinned) {
      const label = html("label", {}, null, list);
      html("input", {type: "checkbox", value: id}, null, label);
      const via = grouped.has(id) ? ` [${grouped.get(id)}]` : "";
      label.append(` ${describeId(id)}${via} `);
      const remove = html("button", {type: "button", title: "unpin"}, "×", label);
      remove.addEventListener("click", (event) => { event.preventDefault(); togglePin(id); });
    }
    const groups = clear($("supernode-list"));
    state.supernodes.forEach((group, k) => {
      const row = html("div", {class: "supernode"}, null, groups);
      html("span", {}, `${group[0]}: ${group.length - 1} nodes`, row);
      const ungroup = html("button", {type: "button", title: "ungroup"}, "×", row);
      ungroup.addEventListener("click", () => {
        state.supernodes.splice(k, 1);
        drawSubgraph();
      });
    });

    const root = clear($("subgraph"));
    if (!state.pinned.length) return;
    const unitOf = (id) => grouped.get(id) ?? id;
    const units = new Map();
    for (const id of state.pinned) {
      const unit = unitOf(id);
      if (!units.has(unit)) units.set(unit, {name: unit, members: [], supernode: grouped.has(id)});
      units.get(unit).members.push(id);
    }
    const width = root.clientWidth || 320;
    const height = root.clientHeight || 200;
    const rows = state.run.n_layers + 2;
    const rowOf = (n) => (n.kind === "token" ? 0 : n.kind === "logit" ? rows - 1 : n.layer + 1);
    const spots = new Map();
    for (const unit of units.values()) {
      const known = unit.members.map((id) => state.nodes.get(id)).filter(Boolean);
      const pos = known.reduce((s, n) => s + n.pos, 0) / Math.max(1, known.length);
      const row = known.reduce((s, n) => s + rowOf(n), 0) / Math.max(1, known.length);
      spots.set(unit.name, {
        x: 60 + (width - 120) * (state.run.n_pos > 1 ? pos / (state.run.n_pos - 1) : 0.5),
        y: height - 20 - (height - 40) * (row / Math.max(1, rows - 1)),
      });
    }
    const sums = new Map();
    for (const [source, target, weight] of state.view.linkList) {
      const a = units.has(unitOf(source)) && state.pinned.includes(source) ? unitOf(source) : null;
      const b = units.has(unitOf(target)) && state.pinned.includes(target) ? unitOf(target) : null;
      if (!a || !b || a === b) continue;
      const key = `${a}\u0000${b}`;
      sums.set(key, (sums.get(key) || 0) + weight);
    }
    const maxSum = Math.max(1e-12, maxOf(sums.values(), (v) => v));
    for (const [key, weight] of sums) {
      const [a, b] = key.split("\u0000").map((name) => spots.get(name));
      svg("line", {x1: a.x, y1: a.y, x2: b.x, y2: b.y,
        class: `link ${weight >= 0 ? "pos" : "neg"}`,
        "stroke-width": (0.6 + 3.4 * Math.abs(weight) / maxSum).toFixed(2)}, root);
    }
    for (const unit of units.values()) {
      const at = spots.get(unit.name);
      const group = svg("g", {class: `sg-node${unit.supernode ? " supernode" : ""}`,
        transform: `translate(${at.x.toFixed(1)} ${at.y.toFixed(1)})`}, root);
      const text = unit.supernode ? `${unit.name} (${unit.members.length})`
        : describeId(unit.name).slice(0, 18);
      if (unit.supernode) {
        const half = 6 + 3.2 * text.length;
        svg("rect", {x: -half, y: -9, width: 2 * half, height: 16, rx: 3}, group);
        svg("text", {x: 0, y: 3, "text-anchor": "middle"}, group).textContent = text;
      } else {
        const node = state.nodes.get(unit.name) || {kind: "feature"};
        shape(node, 5, group);
        svg("text", {x: 0, y: 16, "text-anchor": "middle"}, group).textContent = text;
      }
    }
  }

  // ------------------------------------------------------------------------------ plots

  function frame(root, xs, ys, labels) {
    const width = root.clientWidth || 400;
    const height = root.clientHeight || 230;
    const m = {left: 44, right: labels.right || 12, top: 10, bottom: 30};
    const x = (v) => m.left + (v - xs[0]) / (xs[1] - xs[0] || 1) * (width - m.left - m.right);
    const y = (v) => height - m.bottom - (v - ys[0]) / (ys[1] - ys[0] || 1) *
      (height - m.top - m.bottom);
    const axis = svg("g", {class: "axis"}, root);
    svg("line", {x1: m.left, x2: width - m.right, y1: height - m.bottom, y2: height - m.bottom},
        axis);
    svg("line", {x1: m.left, x2: m.left, y1: m.top, y2: height - m.bottom}, axis);
    for (let k = 0; k <= 4; k++) {
      const vx = xs[0] + (xs[1] - xs[0]) * k / 4;
      svg("text", {x: x(vx), y: height - m.bottom + 12, "text-anchor": "middle"}, axis)
        .textContent = labels.xTick ? labels.xTick(vx) : num(vx, 2);
      if (labels.yTicks !== false) {
        const vy = ys[0] + (ys[1] - ys[0]) * k / 4;
        svg("text", {x: m.left - 4, y: y(vy) + 3, "text-anchor": "end"}, axis).textContent =
          num(vy, 2);
      }
    }
    svg("text", {x: (m.left + width - m.right) / 2, y: height - 3, "text-anchor": "middle"},
        axis).textContent = labels.x;
    return {x, y, width, height, m};
  }

  function drawPlots() {
    if (!state.plots || !state.view) return;
    drawTrace($("plot-trace"), state.plots.trace);
    drawAnalysis();
    drawInfluence();
    drawCumulative();
  }

  // The seed notebook's ridgeline: one histogram per step of the influence series, later
  // steps lower down; the ridges move left as longer paths carry less.
  function drawTrace(svgRoot, trace, title) {
    const root = clear(svgRoot);
    const steps = trace.steps;
    root.dataset.steps = String(steps.length);
    if (!steps.length) return;
    const f = frame(root, [trace.low, trace.high], [0, 1],
                    {x: "log10 added influence per node", yTicks: false, right: 64});
    if (title) svg("text", {x: f.m.left + 4, y: f.m.top + 2, class: "plot-title"}, root)
      .textContent = title;
    const band = (f.height - f.m.top - f.m.bottom) / (steps.length + 1);
    const bins = steps[0].counts.length;
    const binX = (k) => f.x(trace.low + (trace.high - trace.low) * (k + 0.5) / bins);
    steps.forEach((step, i) => {
      const base = f.m.top + band * (i + 1.6);
      const peak = Math.max(1, ...step.counts);
      let d = `M${binX(0)} ${base}`;
      step.counts.forEach((count, k) => { d += ` L${binX(k)} ${base - 1.8 * band * count / peak}`; });
      d += ` L${binX(bins - 1)} ${base} Z`;
      svg("path", {d, class: "ridge"}, root);
      svg("text", {x: f.m.left - 4, y: base, "text-anchor": "end"}, root).textContent = `${i}`;
      svg("text", {x: f.width - f.m.right + 4, y: base}, root)
        .textContent = `sum ${num(step.l1, 2)}`;
    });
  }

  // What an analysis function kept at the influence_iteration point (circuitflow attribute
  // --analysis): the series on the whole graph, and on the node-pruned graph edge pruning
  // scores. Runs analysed without it show no such figure.
  const PHASE_TITLES = {node: "whole graph (node phase)", edge: "node-pruned graph (edge phase)"};

  function drawAnalysis() {
    const captured = state.plots.analysis;
    $("analysis-figure").hidden = !captured;
    if (!captured) return;
    $("analysis-id").textContent = captured.analysis_id;
    for (const phase of Object.keys(PHASE_TITLES)) {
      const root = $(`plot-analysis-${phase}`);
      root.style.display = captured.phases[phase] ? "" : "none";
      if (captured.phases[phase]) drawTrace(root, captured.phases[phase], PHASE_TITLES[phase]);
    }
  }

  function drawInfluence() {
    const root = clear($("plot-influence"));
    const plot = state.plots.influence;
    const kinds = Object.keys(plot.counts);
    if (!kinds.length) return;
    const bins = plot.counts[kinds[0]].length;
    const totals = new Array(bins).fill(0);
    for (const kind of kinds) plot.counts[kind].forEach((c, k) => { totals[k] += c; });
    const f = frame(root, [plot.low, plot.high], [0, Math.max(1, ...totals)],
                    {x: "log10 influence"});
    const step = (plot.high - plot.low) / bins;
    const base = new Array(bins).fill(0);
    for (const kind of kinds) {
      plot.counts[kind].forEach((count, k) => {
        if (!count) return;
        const x0 = f.x(plot.low + k * step);
        const x1 = f.x(plot.low + (k + 1) * step);
        svg("rect", {x: x0, width: Math.max(1, x1 - x0 - 1), y: f.y(base[k] + count),
          height: f.y(base[k]) - f.y(base[k] + count), class: `bar-${kind}`}, root);
        base[k] += count;
      });
    }
    const cut = Math.log10(Math.max(state.view.cut_influence, 1e-30));
    if (cut >= plot.low && cut <= plot.high) {
      svg("line", {x1: f.x(cut), x2: f.x(cut), y1: f.m.top, y2: f.height - f.m.bottom,
                   class: "cut"}, root);
    }
  }

  function drawCumulative() {
    const root = clear($("plot-cumulative"));
    const curve = state.plots.cumulative;
    const top = Math.log10(Math.max(2, curve.n));
    const f = frame(root, [0, top], [0, 1], {
      x: "top k nodes (log scale)", xTick: (v) => String(Math.round(10 ** v)),
    });
    let d = "";
    curve.ranks.forEach((rank, k) => {
      d += `${k ? " L" : "M"}${f.x(Math.log10(rank)).toFixed(1)} ${f.y(curve.shares[k]).toFixed(1)}`;
    });
    svg("path", {d, class: "curve"}, root);
    const threshold = Number(state.view.node_threshold);
    const cut = Math.log10(state.view.cut_rank);
    svg("line", {x1: f.x(0), x2: f.x(top), y1: f.y(threshold), y2: f.y(threshold),
                 class: "cut"}, root);
    svg("line", {x1: f.x(cut), x2: f.x(cut), y1: f.y(0), y2: f.y(1), class: "cut",
                 id: "cumulative-cut"}, root);
    svg("text", {x: f.x(cut) + 4, y: f.y(0.05)}, root).textContent =
      `k = ${state.view.cut_rank} at ${threshold}`;
  }

  start();
})();
