/* SAGIN-HIL live view: the page of docs/view-protocol.md.
 *
 * Plain ES2020, no build step. Globals from the vendored packages: L (leaflet), uPlot,
 * topojson (topojson-client). Sections: utilities, data/state, map, charts, panels,
 * timeline, main loop, test API.
 */
'use strict';
(function () {

// ------------------------------------------------------------------ utilities

const TOKEN = new URLSearchParams(location.search).get('token') || '';
const withToken = (path) => path + (path.includes('?') ? '&' : '?') + 'token=' + encodeURIComponent(TOKEN);
const $ = (id) => document.getElementById(id);
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({'&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;'}[c]));
const num = (v) => typeof v === 'number' && isFinite(v);
const fmt = (v, d = 1) => (num(v) ? v.toFixed(d) : '–');
const fmtAuto = (v) => (!num(v) ? '–' : Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 10 ? v.toFixed(1) : v.toFixed(2));
const D2R = Math.PI / 180;
const EARTH_R = 6371;

async function getJSON(path) {
  const r = await fetch(withToken(path), {cache: 'no-store'});
  if (!r.ok) throw new Error(`${path}: HTTP ${r.status}`);
  return r.json();
}

/** Number of entries of the ascending array arr that are <= x. */
function upperBound(arr, x) {
  let lo = 0, hi = arr.length;
  while (lo < hi) { const m = (lo + hi) >> 1; if (arr[m] <= x) lo = m + 1; else hi = m; }
  return lo;
}
/** Number of entries of the ascending array arr that are < x. */
function lowerBound(arr, x) {
  let lo = 0, hi = arr.length;
  while (lo < hi) { const m = (lo + hi) >> 1; if (arr[m] < x) lo = m + 1; else hi = m; }
  return lo;
}

const STATE_COLORS = {up: '#2ca02c', down: '#d62728', unusable: '#bdbdbd', handover: '#ff8c00'};
const STATES = ['unusable', 'up', 'handover', 'down'];   // drawing order: faint first
const KINDS = {
  satellite:      {shape: 'diamond',  color: '#7e57c2', r: 5,   label: 'satellite'},
  ground_station: {shape: 'square',   color: '#00897b', r: 5,   label: 'ground station'},
  ground_user:    {shape: 'circle',   color: '#1e88e5', r: 4,   label: 'ground user'},
  uav:            {shape: 'triangle', color: '#f57c00', r: 6,   label: 'UAV'},
  edge_server:    {shape: 'square',   color: '#43a047', r: 5.5, label: 'edge server'},
  cloud:          {shape: 'hexagon',  color: '#0288d1', r: 7,   label: 'cloud'},
  switch:         {shape: 'square',   color: '#757575', r: 3.5, label: 'switch'},
  vehicle:        {shape: 'circle',   color: '#c0a000', r: 5,   label: 'vehicle'},
  rsu:            {shape: 'invtri',   color: '#8d6e63', r: 5.5, label: 'RSU'},
};
const KIND_OTHER = {shape: 'circle', color: '#555', r: 4, label: 'node'};
const kindOf = (k) => KINDS[k] || KIND_OTHER;
const PALETTE = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2',
                 '#17becf', '#bcbd22', '#7f7f7f'];
const TRAIL_S = 600;          // satellites' ground-track trail, seconds of run time
const TRAIL_OTHER_S = 120;    // other moving nodes' trail
const SNAP_EVERY = 100;       // keep a copy of the state every this many frames (fast seeking)
const HANDOVER_MS = 2000;
const LABEL_DECLUTTER = 60;   // above this many nodes, overlapping labels hide
// drawing rate while things move (a live page redraws continuously): 30 frames/s look smooth
// and leave the machine that runs the emulation its CPU; ?fps=60 for more.  benchmark() ignores it.
const FPS_CAP = Math.max(1, +new URLSearchParams(location.search).get('fps') || 30);
let lastDraw = 0;
const HISTORY_BUDGET = +new URLSearchParams(location.search).get('history') || 1.2e6;   // entries (positions, link states, loads...) kept in frames:
                              // beyond it the oldest frames go, in blocks of SNAP_EVERY

/** Width in px of a link carrying mbps Mbit/s. */
const linkWidth = (mbps) => Math.min(10, 1.5 + 1.5 * Math.log2(1 + Math.max(0, num(mbps) ? mbps : 0)));
/** Width as drawn: unusable links are thin, down ones at least 2.5 px so that the red shows. */
const drawnWidth = (st, mbps) => (st === 'unusable' ? 1 : st === 'down' ? Math.max(2.5, linkWidth(mbps)) : linkWidth(mbps));

// ------------------------------------------------------------------ data / state

const A = {
  topo: null, geo: true, live: true, lags: [], declared: new Set(),
  nodes: [], node: new Map(),        // records: {name, kind, i, pos0, moving, ip, track, links}
  links: [], link: new Map(),        // records: topology link + {i, endIdx}
  flowLabel: new Map(),              // flow name -> "name src→dst"
  frames: [], times: [], weight: [], // frames kept (the newest), their t, their entry counts
  base: 0, kept: 0,                  // frames dropped from the front; entries in frames kept
  next: 0, ended: false, dropped: 0, nowT: null, latestT: 0,
  head: null, snaps: [],             // state after every received frame; copies every SNAP_EVERY
  view: null, T: 0, smoothT: 0,      // displayed state, displayed time, positions' time (live)
  following: true, playing: false, speed: 1,
  ready: false, selected: null, hover: null,
  events: [], anims: [],
  dirty: true, uiDirty: true, eventsDirty: true,
};

function newState() {
  return {n: 0, t: 0, links: {}, load: {}, rtt: {}, nodes: {}, pos: {}, metrics: {}, flows: {},
          attach: {}, lastHandover: {}};
}

function mergeInto(map, key, rec) {
  if (!rec || typeof rec !== 'object') return;
  const o = map[key] || (map[key] = {});
  Object.assign(o, rec);
}

/** Apply one frame (a delta) to a state. */
function applyFrame(s, f) {
  s.n += 1;
  s.t = f.t;
  if (f.pos) for (const k in f.pos) if (Array.isArray(f.pos[k])) s.pos[k] = f.pos[k];
  if (f.links) for (const k in f.links) mergeInto(s.links, k, f.links[k]);
  if (f.load) Object.assign(s.load, f.load);
  if (f.rtt) Object.assign(s.rtt, f.rtt);
  if (f.nodes) for (const k in f.nodes) mergeInto(s.nodes, k, f.nodes[k]);
  if (f.flows) for (const k in f.flows) mergeInto(s.flows, k, f.flows[k]);
  if (f.metrics) Object.assign(s.metrics, f.metrics);
  if (f.handovers) for (const h of f.handovers) {
    s.attach[h.terminal] = h.to;
    s.lastHandover[h.terminal] = {t: f.t, from: h.from, to: h.to, group: h.group};
  }
}

/** A link's state in s: its last reported state, else up (static) / unusable (dynamic). */
function linkState(s, L) {
  const r = s.links[L.name];
  if (r) {
    if (r.state) return r.state;
    if (r.up === false) return 'down';
    if (r.routed === false) return 'unusable';
    if (r.up === true) return 'up';
  }
  return L.dynamic ? 'unusable' : 'up';
}

function initTopology(topo) {
  A.topo = topo;
  A.geo = topo.frame !== 'local';
  A.live = !!(topo.run && topo.run.live);
  A.following = A.live;
  const origin = A.geo ? [(topo.origin || [0, 0])[0], (topo.origin || [0, 0])[1], 0] : [0, 0, 0];
  (topo.nodes || []).forEach((n, i) => {
    const rec = {name: n.name, kind: n.kind, i, ip: n.ip, moving: !!n.moving, links: [],
                 pos0: Array.isArray(n.pos) ? n.pos : origin, track: null};
    A.nodes.push(rec);
    A.node.set(n.name, rec);
  });
  (topo.links || []).forEach((l, i) => {
    const rec = Object.assign({}, l, {i, ends: l.ends || []});
    rec.endIdx = rec.ends.map((e) => (A.node.has(e) ? A.node.get(e).i : -1));
    A.links.push(rec);
    A.link.set(rec.name, rec);
    for (const e of rec.ends) if (A.node.has(e)) A.node.get(e).links.push(rec);
  });
  for (const f of topo.flows || []) A.flowLabel.set(f.name, `${f.name} ${f.src}→${f.dst}`);
  A.head = newState();
  A.view = newState();
}

/** Store frames as they arrive: positions' tracks, events, charts, and the head state. */
function ingest(frames) {
  for (const f of frames) {
    if (!f || !num(f.t)) continue;
    const t = A.times.length && f.t < A.times[A.times.length - 1] ? A.times[A.times.length - 1] : f.t;
    A.frames.push(f);
    A.times.push(t);
    let w = 1;
    for (const k of ['pos', 'links', 'load', 'rtt', 'nodes', 'flows', 'metrics']) if (f[k]) w += Object.keys(f[k]).length;
    A.weight.push(w);
    A.kept += w;
    if (f.pos) {
      for (const name in f.pos) {
        const node = A.node.get(name), p = f.pos[name];
        if (!node || !Array.isArray(p)) continue;
        const tr = node.track || (node.track = {t: [], p: [], u: [], v: []});
        tr.t.push(t); tr.p.push(p); tr.u.push(projU(p[0], p[1])); tr.v.push(projV(p[0], p[1]));
      }
    }
    if (f.events) {
      for (const ev of f.events) A.events.push(Object.assign({t}, ev));
      A.eventsDirty = true;
    }
    applyFrame(A.head, f);
    if (A.head.n % SNAP_EVERY === 0) A.snaps.push(structuredClone(A.head));
    chartsIngest(f, t);
  }
  if (A.times.length) A.latestT = A.times[A.times.length - 1];
  trimHistory();
}

/** Keep the page's memory bounded in a long run: drop the oldest frames (a block of
 *  SNAP_EVERY at a time, so that a snapshot holds the state where the kept frames start). */
function trimHistory() {
  if (A.kept <= HISTORY_BUDGET) return;
  let drop = 0, freed = 0;
  while (A.kept - freed > HISTORY_BUDGET * 0.9 && A.frames.length - drop > 2 * SNAP_EVERY) {
    for (let i = drop; i < drop + SNAP_EVERY; i++) freed += A.weight[i];
    drop += SNAP_EVERY;
  }
  drop -= (A.base + drop) % SNAP_EVERY;
  if (drop <= 0) return;
  A.frames.splice(0, drop); A.times.splice(0, drop); A.weight.splice(0, drop);
  A.base += drop;
  A.kept -= freed;
  A.snaps = A.snaps.filter((sn) => sn.n >= A.base);
  const t0 = A.times[0];
  for (const nd of A.nodes) {
    const tr = nd.track;
    if (!tr) continue;
    const k = Math.max(0, lowerBound(tr.t, t0) - 1);   // one point before, to interpolate
    if (k) { tr.t.splice(0, k); tr.p.splice(0, k); tr.u.splice(0, k); tr.v.splice(0, k); }
  }
}

/** The earliest time the page can show (0 unless the oldest frames were dropped). */
const minT = () => (A.base && A.times.length ? A.times[0] : 0);

/** Show the state at run time T: apply frames forward, or rebuild from the nearest snapshot. */
function showTime(T, animate) {
  T = Math.max(minT(), Math.min(T, A.latestT));
  A.T = T;
  const idx = A.base + upperBound(A.times, T);    // frames (counted from the run's first) at or before T
  let v = A.view;
  if (idx < v.n || idx - v.n > 2 * SNAP_EVERY || v.n < A.base) {
    let base = null;
    for (let j = A.snaps.length - 1; j >= 0; j--) {
      if (A.snaps[j].n <= idx) { base = A.snaps[j]; break; }
    }
    v = A.view = base ? structuredClone(base) : newState();
    animate = false;
    A.anims.length = 0;
    A.uiDirty = true;
  }
  const from = v.n;
  animate = animate && idx - from <= 20;
  for (let i = from; i < idx; i++) {
    const f = A.frames[i - A.base];
    applyFrame(v, f);
    if (animate && f.handovers && f.t >= T - 3) startHandovers(f.handovers);
  }
  if (idx !== from) A.uiDirty = true;
  A.dirty = true;
}

/** Position of a node at time tq from its track: the last known one, or interpolated. */
function posAt(node, tq, interp, out) {
  const tr = node.track;
  let p;
  if (!tr || !tr.t.length || tq < tr.t[0]) p = node.pos0;           // before its first report
  else {
    const i = upperBound(tr.t, tq) - 1;
    if (!interp || i >= tr.t.length - 1 || tr.t[i + 1] <= tr.t[i]) p = tr.p[i];
    else {
      const a = tr.p[i], b = tr.p[i + 1], f = (tq - tr.t[i]) / (tr.t[i + 1] - tr.t[i]);
      let b1 = b[1];
      if (A.geo && Math.abs(b1 - a[1]) > 180) b1 += b1 > a[1] ? -360 : 360;
      let lon = a[1] + (b1 - a[1]) * f;
      if (A.geo) lon = ((lon + 540) % 360) - 180;
      out[0] = a[0] + (b[0] - a[0]) * f;
      out[1] = lon;
      out[2] = (a[2] || 0) + ((b[2] || 0) - (a[2] || 0)) * f;
      return out;
    }
  }
  out[0] = p[0]; out[1] = p[1]; out[2] = p[2] || 0;
  return out;
}

// ------------------------------------------------------------------ map

// Projection to "unit" coordinates: Leaflet's projected point divided by the CRS scale.
// geo (EPSG:3857): u = lon/360 + 1/2, v = Mercator; local (CRS.Simple): latLng = [north, east].
function projU(a, b) { return A.geo ? b / 360 + 0.5 : a; }
function projV(a, b) {
  if (!A.geo) return -b;
  const s = Math.sin(Math.max(-85.0511, Math.min(85.0511, a)) * D2R);
  return 0.5 - 0.25 / Math.PI * Math.log((1 + s) / (1 - s));
}
const toLatLng = (p) => (A.geo ? L.latLng(p[0], p[1]) : L.latLng(p[1], p[0]));

const M = {
  map: null, canvas: null, ctx: null, w: 0, h: 0, dpr: 1, s: 1, ox: 0, oy: 0,
  pa: null, pb: null, pc: null,      // drawn positions (lat/lon/alt or east/north/up)
  sx: null, sy: null,                // drawn screen positions
  showFootprints: true, showUnusable: true, showLabels: true, showTrails: true,
  labelW: null, jitter: 0,
  skip: new Set(),                   // parts left out (profiling)
};

function initMap() {
  const crs = A.geo ? L.CRS.EPSG3857 : L.CRS.Simple;
  const map = M.map = L.map('map', {
    crs, preferCanvas: true, zoomAnimation: false, markerZoomAnimation: false, fadeAnimation: false,
    attributionControl: false, zoomSnap: 0.25, zoomDelta: 0.5, wheelPxPerZoomLevel: 100,
    minZoom: A.geo ? 1 : -14, maxZoom: A.geo ? 17 : 8, worldCopyJump: false,
  });
  $('map').classList.add(A.geo ? 'geo' : 'local');
  L.control.scale({imperial: false, position: 'bottomright'}).addTo(map);
  addMapControls();
  const n = A.nodes.length;
  M.pa = new Float64Array(n); M.pb = new Float64Array(n); M.pc = new Float64Array(n);
  M.sx = new Float64Array(n); M.sy = new Float64Array(n);

  const c = M.canvas = document.createElement('canvas');
  c.className = 'overlay';
  map.getContainer().appendChild(c);
  M.ctx = c.getContext('2d');
  M.ctx.font = '11px system-ui, -apple-system, "Segoe UI", sans-serif';
  M.labelW = A.nodes.map((nd) => M.ctx.measureText(nd.name).width);
  resizeCanvas();
  map.on('resize', () => { resizeCanvas(); A.dirty = true; });
  map.on('move zoom viewreset', () => { A.dirty = true; });
  map.on('click', (e) => {
    const hit = hitTest(e.containerPoint.x, e.containerPoint.y);
    select(hit);
  });
  map.on('mousemove', (e) => onHover(e.containerPoint));
  // until the user moves the map, keep every node in view (a live run's first positions
  // often arrive after the page has opened)
  for (const ev of ['mousedown', 'wheel', 'touchstart', 'keydown']) {
    map.getContainer().addEventListener(ev, (e) => {
      if (!e.target.closest || !e.target.closest('.map-ctl')) M.userMoved = true;
    }, {passive: true});
  }
  map.on('mouseout', () => onHover(null));
  if (A.geo) loadLand();
  fitNodes();
  buildLegend();
}

/** world-atlas rings cross the antimeridian (Russia, Fiji) or circle the pole (Antarctica):
 *  make each ring's longitudes continuous, close a polar ring along the pole, and add a copy
 *  shifted by 360° of a ring that leaves [-180, 180], so that Leaflet draws no stray lines. */
function unwrapLand(geo) {
  const out = [];
  for (const feat of geo.features) {
    const g = feat.geometry;
    const polys = g.type === 'MultiPolygon' ? g.coordinates : [g.coordinates];
    for (const poly of polys) {
      const rings = poly.map((ring) => {
        const r = [ring[0].slice()];
        for (let i = 1; i < ring.length; i++) {
          let lon = ring[i][0];
          const prev = r[i - 1][0];
          while (lon - prev > 180) lon -= 360;
          while (prev - lon > 180) lon += 360;
          r.push([lon, ring[i][1]]);
        }
        const drift = r[r.length - 1][0] - r[0][0];
        if (Math.abs(drift) > 180) {            // around a pole: close the ring along it
          const pole = r[0][1] < 0 ? -90 : 90, last = r[r.length - 1][0];
          r.push([last, pole], [r[0][0], pole], r[0].slice());
        }
        return r;
      });
      out.push(rings);
      const lons = rings[0].map((q) => q[0]);
      const hi = Math.max(...lons), lo = Math.min(...lons);
      if (hi > 180) out.push(rings.map((r) => r.map(([x, y]) => [x - 360, y])));
      if (lo < -180) out.push(rings.map((r) => r.map(([x, y]) => [x + 360, y])));
    }
  }
  return {type: 'Feature', properties: {}, geometry: {type: 'MultiPolygon', coordinates: out}};
}

function loadLand() {
  getJSON('/vendor/world-atlas/land-110m.json').then((topo) => {
    const land = unwrapLand(topojson.feature(topo, topo.objects.land));
    L.geoJSON(land, {
      interactive: false,
      style: {color: '#b3aa94', weight: 0.8, fillColor: '#f4f0e6', fillOpacity: 1},
    }).addTo(M.map);
  }).catch((e) => showError('coastlines: ' + e.message));
}

/** Refit while the user has not moved the map and a node is out of view. */
function autoFit() {
  if (M.userMoved || !A.nodes.length) return;
  const b = M.map.getBounds().pad(-0.03);
  if (A.nodes.some((nd) => !b.contains(toLatLng(A.view.pos[nd.name] || nd.pos0)))) fitNodes();
}

/** Fit the map to the nodes: where they are now, and where moving ones (but satellites) went. */
function fitNodes() {
  const pts = A.nodes.map((nd) => toLatLng(A.view.pos[nd.name] || nd.pos0));
  for (const nd of A.nodes) {
    const tr = nd.track;
    if (!tr || nd.kind === 'satellite') continue;
    const step = Math.max(1, Math.floor(tr.p.length / 200));
    for (let k = 0; k < tr.p.length; k += step) pts.push(toLatLng(tr.p[k]));
  }
  if (!pts.length) { M.map.setView([0, 0], A.geo ? 2 : 0); return; }
  const b = L.latLngBounds(pts);
  if (A.geo && b.getNorth() - b.getSouth() < 1e-6 && b.getEast() - b.getWest() < 1e-6) {
    M.map.setView(b.getCenter(), 12);
  } else if (!A.geo && b.getNorth() - b.getSouth() < 1 && b.getEast() - b.getWest() < 1) {
    M.map.setView(b.getCenter(), 0);
  } else {
    M.map.fitBounds(b, {padding: [40, 40], maxZoom: A.geo ? 14 : 4});
  }
  A.dirty = true;
}

function addMapControls() {
  const Ctl = L.Control.extend({
    onAdd() {
      const div = L.DomUtil.create('div', 'leaflet-bar map-ctl');
      const geoOnly = A.geo ? '' : ' hidden';
      div.innerHTML = `
        <button type="button" id="fit" title="fit the view to the nodes">⤢ fit</button>
        <label><input type="checkbox" id="tg-labels" checked> labels</label>
        <label><input type="checkbox" id="tg-unusable" checked> unusable links</label>
        <label${geoOnly}><input type="checkbox" id="tg-footprints" checked> footprints</label>
        <label><input type="checkbox" id="tg-trails" checked> trails</label>`;
      L.DomEvent.disableClickPropagation(div);
      L.DomEvent.disableScrollPropagation(div);
      return div;
    },
  });
  new Ctl({position: 'topright'}).addTo(M.map);
  $('fit').addEventListener('click', () => { M.userMoved = false; fitNodes(); });   // and keep them in view
  const toggle = (id, key) => $(id).addEventListener('change', (e) => { M[key] = e.target.checked; A.dirty = true; });
  toggle('tg-labels', 'showLabels');
  toggle('tg-unusable', 'showUnusable');
  toggle('tg-footprints', 'showFootprints');
  toggle('tg-trails', 'showTrails');
}

function resizeCanvas() {
  const size = M.map.getSize();
  M.dpr = window.devicePixelRatio || 1;
  M.w = size.x; M.h = size.y;
  M.canvas.width = Math.round(size.x * M.dpr);
  M.canvas.height = Math.round(size.y * M.dpr);
  M.canvas.style.width = size.x + 'px';
  M.canvas.style.height = size.y + 'px';
  M.ctx.font = '11px system-ui, -apple-system, "Segoe UI", sans-serif';
}

function updateProjection() {
  const map = M.map;
  M.s = map.options.crs.scale(map.getZoom());
  const po = map.getPixelOrigin(), lp0 = map.containerPointToLayerPoint([0, 0]);
  M.ox = po.x + lp0.x;
  M.oy = po.y + lp0.y;
}

/** Positions are interpolated while the run moves: live, or playing a replay. */
function positionsTime() {
  if (A.following) return {tq: A.smoothT, interp: true};
  return {tq: A.T, interp: A.playing};
}

const tmp3 = [0, 0, 0];
function computePositions() {
  const {tq, interp} = positionsTime();
  const s = M.s, ox = M.ox, oy = M.oy, j = M.jitter;
  for (const nd of A.nodes) {
    const p = posAt(nd, tq, interp, tmp3), i = nd.i;
    M.pa[i] = p[0]; M.pb[i] = p[1]; M.pc[i] = p[2];
    M.sx[i] = projU(p[0], p[1]) * s - ox;
    M.sy[i] = projV(p[0], p[1]) * s - oy;
    if (j) { M.sx[i] += (Math.random() - 0.5) * j; M.sy[i] += (Math.random() - 0.5) * j; }
  }
}

/** x of end b drawn next to end a: the world copy nearest a (geo wraps at ±180°). */
function nearX(xa, xb) {
  if (!A.geo) return xb;
  const W = M.s;
  if (xb - xa > W / 2) return xb - W;
  if (xa - xb > W / 2) return xb + W;
  return xb;
}

function draw() {
  const ctx = M.ctx;
  updateProjection();
  computePositions();
  ctx.setTransform(M.dpr, 0, 0, M.dpr, 0, 0);
  ctx.clearRect(0, 0, M.w, M.h);
  const skip = M.skip;
  if (!skip.has('grid')) { if (A.geo) drawGraticule(ctx); else drawGrid(ctx); }
  if (A.geo && M.showFootprints && !skip.has('footprints')) drawFootprints(ctx);
  if (M.showTrails && !skip.has('trails')) drawTrails(ctx);
  drawHighlights(ctx);
  if (!skip.has('links')) drawLinks(ctx);
  drawHandovers(ctx);
  if (!skip.has('nodes')) drawNodes(ctx);
  if (M.showLabels && !skip.has('labels')) drawLabels(ctx);
}

function niceStep(minUnits) {
  const p = Math.pow(10, Math.floor(Math.log10(minUnits)));
  for (const m of [1, 2, 5, 10]) if (m * p >= minUnits) return m * p;
  return 10 * p;
}

function drawGrid(ctx) {
  const s = M.s, step = niceStep(70 / s);
  const e0 = M.ox / s, e1 = (M.ox + M.w) / s;           // east range (u = east)
  const n0 = -(M.oy + M.h) / s, n1 = -M.oy / s;          // north range (v = -north)
  ctx.lineWidth = 1;
  ctx.strokeStyle = 'rgba(90,110,140,0.16)';
  ctx.beginPath();
  for (let e = Math.ceil(e0 / step) * step; e <= e1; e += step) {
    const x = Math.round(e * s - M.ox) + 0.5; ctx.moveTo(x, 0); ctx.lineTo(x, M.h);
  }
  for (let n = Math.ceil(n0 / step) * step; n <= n1; n += step) {
    const y = Math.round(-n * s - M.oy) + 0.5; ctx.moveTo(0, y); ctx.lineTo(M.w, y);
  }
  ctx.stroke();
  ctx.fillStyle = 'rgba(70,85,105,0.75)';
  ctx.textBaseline = 'top';
  const unit = (m) => (step >= 1000 ? (m / 1000) + ' km' : Math.round(m) + ' m');
  for (let e = Math.ceil(e0 / step) * step; e <= e1; e += step) {   // clear of the zoom buttons
    const x = Math.round(e * s - M.ox) + 3;
    if (x > 56) ctx.fillText(unit(e), x, 3);
  }
  ctx.textBaseline = 'bottom';
  for (let n = Math.ceil(n0 / step) * step; n <= n1; n += step) {   // and of the legend
    const y = Math.round(-n * s - M.oy) - 2;
    if (y > 90 && y < M.h - 60) ctx.fillText(unit(n), 3, y);
  }
  ctx.textBaseline = 'alphabetic';
}

function drawGraticule(ctx) {
  const s = M.s, step = s > 4000 ? 10 : 30;
  ctx.lineWidth = 1;
  ctx.strokeStyle = 'rgba(40,80,120,0.10)';
  ctx.beginPath();
  for (let lon = -180; lon <= 180; lon += step) {
    const x = Math.round(projU(0, lon) * s - M.ox) + 0.5;
    if (x < 0 || x > M.w) continue;
    ctx.moveTo(x, projV(85, 0) * s - M.oy); ctx.lineTo(x, projV(-85, 0) * s - M.oy);
  }
  for (let lat = -60; lat <= 60; lat += step) {
    const y = Math.round(projV(lat, 0) * s - M.oy) + 0.5;
    if (y < 0 || y > M.h) continue;
    ctx.moveTo(-M.ox, y); ctx.lineTo(s - M.ox, y);
  }
  ctx.stroke();
}

const FP_N = 48;
const FP_COS = Array.from({length: FP_N}, (_, k) => Math.cos(2 * Math.PI * k / FP_N));
const FP_SIN = Array.from({length: FP_N}, (_, k) => Math.sin(2 * Math.PI * k / FP_N));

/** A footprint's outline for a satellite at lat/alt: u offsets from its centre and absolute v
 *  (Mercator only stretches with latitude, so the outline moves with longitude unchanged). */
function footprintShape(latDeg, altKm, e) {
  const th = Math.acos(EARTH_R * Math.cos(e) / (EARTH_R + altKm)) - e;
  if (!(th > 0)) return null;
  const la = latDeg * D2R, sla = Math.sin(la), cla = Math.cos(la), sth = Math.sin(th), cth = Math.cos(th);
  const du = new Float64Array(FP_N), v = new Float64Array(FP_N);
  for (let k = 0; k < FP_N; k++) {
    const lat2 = Math.asin(sla * cth + cla * sth * FP_COS[k]);
    du[k] = Math.atan2(FP_SIN[k] * sth * cla, cth - sla * Math.sin(lat2)) / (2 * Math.PI);
    v[k] = projV(lat2 / D2R, 0);
  }
  return {lat: latDeg, alt: altKm, du, v};
}

/** Satellites' footprints: the ground that sees them above footprint_min_elevation_deg. */
function drawFootprints(ctx) {
  const emin = A.topo.footprint_min_elevation_deg;
  if (!num(emin)) return;
  const e = emin * D2R, s = M.s, oy = M.oy;
  const cache = M.fpCache || (M.fpCache = []);
  ctx.beginPath();
  for (const nd of A.nodes) {
    if (nd.kind !== 'satellite') continue;
    const i = nd.i;
    let fp = cache[i];
    if (!fp || Math.abs(fp.lat - M.pa[i]) > 0.1 || Math.abs(fp.alt - M.pc[i]) > 1) fp = cache[i] = footprintShape(M.pa[i], M.pc[i], e);
    if (!fp) continue;
    const x0 = M.sx[i], du = fp.du, v = fp.v;
    if (x0 + du[FP_N / 4] * s < 0 || x0 - du[FP_N / 4] * s > M.w) continue;
    ctx.moveTo(x0 + du[0] * s, v[0] * s - oy);
    for (let k = 1; k < FP_N; k++) ctx.lineTo(x0 + du[k] * s, v[k] * s - oy);
    ctx.closePath();
  }
  ctx.fillStyle = 'rgba(126,87,194,0.04)';
  ctx.fill();
  ctx.lineWidth = 1;
  ctx.strokeStyle = 'rgba(126,87,194,0.28)';
  ctx.stroke();
}

/** Trails: the positions received over the last TRAIL_S seconds (satellites' ground tracks). */
function drawTrails(ctx) {
  const {tq} = positionsTime(), s = M.s, ox = M.ox, oy = M.oy;
  for (const sat of [true, false]) {
    ctx.beginPath();
    for (const nd of A.nodes) {
      const tr = nd.track;
      if (!tr || !nd.moving || (nd.kind === 'satellite') !== sat) continue;
      const i0 = lowerBound(tr.t, tq - (sat ? TRAIL_S : TRAIL_OTHER_S));
      const i1 = upperBound(tr.t, tq);
      if (i1 - i0 < 1) continue;
      let px = tr.u[i0] * s - ox, py = tr.v[i0] * s - oy;
      ctx.moveTo(px, py);
      const step = Math.max(1, Math.floor((i1 - i0) / 90));   // at most ~90 points a trail
      for (let k = Math.min(i1, i0 + step); k <= i1; k = k < i1 ? Math.min(i1, k + step) : k + 1) {
        const last = k === i1;
        const x = last ? M.sx[nd.i] : tr.u[k] * s - ox, y = last ? M.sy[nd.i] : tr.v[k] * s - oy;
        if (A.geo && Math.abs(x - px) > s / 2) { ctx.moveTo(x, y); px = x; py = y; continue; }
        if (!last && Math.abs(x - px) + Math.abs(y - py) < 3) continue;
        ctx.lineTo(x, y); px = x; py = y;
      }
    }
    ctx.lineWidth = 1;
    ctx.strokeStyle = sat ? 'rgba(126,87,194,0.55)' : 'rgba(245,124,0,0.55)';
    ctx.stroke();
  }
}

function linkPath(ctx, L) {
  const e = L.endIdx, a = e[0];
  if (a < 0) return;
  const xa = M.sx[a], ya = M.sy[a];
  for (let k = 1; k < e.length; k++) {
    const b = e[k];
    if (b < 0) continue;
    ctx.moveTo(xa, ya);
    ctx.lineTo(nearX(xa, M.sx[b]), M.sy[b]);
  }
}

/** Links, one stroke each (a single multi-segment stroke rasterises far slower in Chromium),
 *  grouped by state so that the style is set once per state. */
function drawLinks(ctx) {
  const v = A.view, W = M.w, H = M.h;
  for (const st of STATES) {
    if (st === 'unusable' && !M.showUnusable) continue;
    ctx.strokeStyle = STATE_COLORS[st];
    ctx.setLineDash(st === 'unusable' ? [4, 4] : []);   // opaque, solid: cheaper to rasterise
    for (const L of A.links) {
      if (linkState(v, L) !== st) continue;
      const e = L.endIdx, a = e[0];
      if (a < 0) continue;
      ctx.lineWidth = drawnWidth(st, v.load[L.name]);
      const xa = M.sx[a], ya = M.sy[a];
      for (let k = 1; k < e.length; k++) {
        const b = e[k];
        if (b < 0) continue;
        const xb = nearX(xa, M.sx[b]), yb = M.sy[b];
        if ((xa < 0 && xb < 0) || (xa > W && xb > W) || (ya < 0 && yb < 0) || (ya > H && yb > H)) continue;
        ctx.beginPath();
        ctx.moveTo(xa, ya);
        ctx.lineTo(xb, yb);
        ctx.stroke();
      }
    }
  }
  ctx.setLineDash([]);
}

/** Halos under the selected / hovered item and the links of a selected node. */
function drawHighlights(ctx) {
  const mark = (sel, color, width) => {
    if (!sel) return;
    ctx.beginPath();
    if (sel.type === 'link') linkPath(ctx, A.link.get(sel.name));
    else for (const L of A.node.get(sel.name).links) linkPath(ctx, L);
    ctx.lineWidth = width; ctx.strokeStyle = color; ctx.stroke();
    if (sel.type === 'node') {
      const i = A.node.get(sel.name).i;
      ctx.beginPath(); ctx.arc(M.sx[i], M.sy[i], 11, 0, 2 * Math.PI);
      ctx.fillStyle = color; ctx.fill();
    }
  };
  mark(A.hover, 'rgba(30,136,229,0.18)', 9);
  mark(A.selected, 'rgba(30,136,229,0.32)', A.selected && A.selected.type === 'node' ? 7 : 11);
}

function startHandovers(list) {
  const now = performance.now();
  for (const h of list) {
    if (A.anims.length > 60) A.anims.shift();
    A.anims.push({start: now, terminal: h.terminal, from: h.from, to: h.to});
  }
}

/** Handover: a pulse travels along the new link; the old one fades out (HANDOVER_MS). */
function drawHandovers(ctx) {
  if (!A.anims.length) return;
  const now = performance.now();
  A.anims = A.anims.filter((a) => now - a.start < HANDOVER_MS);
  for (const a of A.anims) {
    const f = (now - a.start) / HANDOVER_MS;
    const t = A.node.get(a.terminal), from = A.node.get(a.from), to = A.node.get(a.to);
    if (!t) continue;
    const xt = M.sx[t.i], yt = M.sy[t.i];
    if (from) {
      ctx.beginPath(); ctx.moveTo(xt, yt); ctx.lineTo(nearX(xt, M.sx[from.i]), M.sy[from.i]);
      ctx.globalAlpha = 0.85 * (1 - f); ctx.lineWidth = 3; ctx.strokeStyle = '#9e9e9e';
      ctx.setLineDash([3, 4]); ctx.stroke(); ctx.setLineDash([]);
    }
    if (to) {
      const xs = nearX(xt, M.sx[to.i]), ys = M.sy[to.i];
      ctx.globalAlpha = 0.7 * (1 - f * 0.5);
      ctx.beginPath(); ctx.moveTo(xt, yt); ctx.lineTo(xs, ys);
      ctx.lineWidth = 3; ctx.strokeStyle = STATE_COLORS.handover; ctx.stroke();
      const g = (f * 2) % 1, px = xt + (xs - xt) * g, py = yt + (ys - yt) * g;
      ctx.globalAlpha = 1;
      ctx.beginPath(); ctx.arc(px, py, 5, 0, 2 * Math.PI); ctx.fillStyle = STATE_COLORS.handover; ctx.fill();
      ctx.beginPath(); ctx.arc(px, py, 9 + 4 * g, 0, 2 * Math.PI);
      ctx.globalAlpha = 0.5 * (1 - g); ctx.lineWidth = 2; ctx.stroke();
    }
    ctx.globalAlpha = 1;
  }
}

function shapePath(ctx, shape, x, y, r) {
  switch (shape) {
    case 'square': ctx.rect(x - r, y - r, 2 * r, 2 * r); break;
    case 'diamond':
      ctx.moveTo(x, y - r * 1.3); ctx.lineTo(x + r, y); ctx.lineTo(x, y + r * 1.3); ctx.lineTo(x - r, y);
      ctx.closePath(); break;
    case 'triangle':
      ctx.moveTo(x, y - r * 1.15); ctx.lineTo(x + r, y + r * 0.75); ctx.lineTo(x - r, y + r * 0.75);
      ctx.closePath(); break;
    case 'invtri':
      ctx.moveTo(x, y + r * 1.15); ctx.lineTo(x + r, y - r * 0.75); ctx.lineTo(x - r, y - r * 0.75);
      ctx.closePath(); break;
    case 'hexagon':
      for (let k = 0; k < 6; k++) {
        const a = Math.PI / 3 * k, px = x + r * Math.cos(a), py = y + r * Math.sin(a);
        if (k === 0) ctx.moveTo(px, py); else ctx.lineTo(px, py);
      }
      ctx.closePath(); break;
    default: ctx.moveTo(x + r, y); ctx.arc(x, y, r, 0, 2 * Math.PI);
  }
}

function drawNodes(ctx) {
  ctx.lineWidth = 1.2;
  ctx.strokeStyle = '#ffffff';
  for (const kind of M.kindsPresent) {
    const k = kindOf(kind);
    ctx.beginPath();
    for (const nd of A.nodes) if (nd.kind === kind) shapePath(ctx, k.shape, M.sx[nd.i], M.sy[nd.i], k.r);
    ctx.fillStyle = k.color;
    ctx.fill();
    ctx.stroke();
  }
}

/** Permanent name labels; with many nodes, a label overlapping an earlier one is hidden. */
function drawLabels(ctx) {
  const declutter = A.nodes.length > LABEL_DECLUTTER, CELL = 24;
  const grid = declutter ? new Map() : null, placed = [];
  const order = A.selected && A.selected.type === 'node'
    ? [A.node.get(A.selected.name)].concat(A.nodes) : A.nodes;
  const seen = new Set();
  ctx.font = '11px system-ui, -apple-system, "Segoe UI", sans-serif';
  ctx.lineJoin = 'round';
  for (const nd of order) {
    if (seen.has(nd.i)) continue;
    seen.add(nd.i);
    const r = kindOf(nd.kind).r, x = M.sx[nd.i] + r + 3, y = M.sy[nd.i] + 4;
    const w = M.labelW[nd.i];
    if (x > M.w || x + w < 0 || y < 0 || y - 11 > M.h) continue;
    if (declutter) {
      const x0 = x - 1, y0 = y - 11, x1 = x + w + 1, y1 = y + 2;
      const c0 = Math.floor(x0 / CELL), c1 = Math.floor(x1 / CELL), r0 = Math.floor(y0 / CELL), r1 = Math.floor(y1 / CELL);
      let clash = false;
      for (let cx = c0; cx <= c1 && !clash; cx++) {
        for (let cy = r0; cy <= r1 && !clash; cy++) {
          const cell = grid.get(cx * 65536 + cy);
          if (cell) for (const b of cell) if (x0 < b[2] && b[0] < x1 && y0 < b[3] && b[1] < y1) { clash = true; break; }
        }
      }
      if (clash) continue;
      const box = [x0, y0, x1, y1];
      for (let cx = c0; cx <= c1; cx++) {
        for (let cy = r0; cy <= r1; cy++) {
          const k = cx * 65536 + cy;
          const cell = grid.get(k);
          if (cell) cell.push(box); else grid.set(k, [box]);
        }
      }
    }
    placed.push(nd.i, x, y);
  }
  // a pale box under each name (a stroked halo costs far more to rasterise)
  ctx.beginPath();
  for (let k = 0; k < placed.length; k += 3) ctx.rect(placed[k + 1] - 2, placed[k + 2] - 10, M.labelW[placed[k]] + 4, 13);
  ctx.fillStyle = 'rgba(255,255,255,0.72)';
  ctx.fill();
  ctx.fillStyle = '#1f2a33';
  for (let k = 0; k < placed.length; k += 3) ctx.fillText(A.nodes[placed[k]].name, placed[k + 1], placed[k + 2]);
}

function segDist(px, py, ax, ay, bx, by) {
  const dx = bx - ax, dy = by - ay, l2 = dx * dx + dy * dy;
  const f = l2 ? Math.max(0, Math.min(1, ((px - ax) * dx + (py - ay) * dy) / l2)) : 0;
  return Math.hypot(px - ax - f * dx, py - ay - f * dy);
}

/** The node (within 10 px) or else link (within 6 px) under a container point. */
function hitTest(x, y) {
  let best = null, bd = 10;
  for (const nd of A.nodes) {
    const d = Math.hypot(M.sx[nd.i] - x, M.sy[nd.i] - y);
    if (d < bd) { bd = d; best = {type: 'node', name: nd.name}; }
  }
  if (best) return best;
  bd = 6;
  for (const L of A.links) {
    if (!M.showUnusable && linkState(A.view, L) === 'unusable') continue;
    const e = L.endIdx;
    if (e[0] < 0) continue;
    for (let k = 1; k < e.length; k++) {
      if (e[k] < 0) continue;
      const d = segDist(x, y, M.sx[e[0]], M.sy[e[0]], nearX(M.sx[e[0]], M.sx[e[k]]), M.sy[e[k]]);
      if (d < bd) { bd = d; best = {type: 'link', name: L.name}; }
    }
  }
  return best;
}

function onHover(pt) {
  const box = $('hover');
  const hit = pt ? hitTest(pt.x, pt.y) : null;
  const same = (a, b) => (a && b ? a.type === b.type && a.name === b.name : a === b);
  if (!same(hit, A.hover)) { A.hover = hit; A.dirty = true; }
  M.map.getContainer().style.cursor = hit ? 'pointer' : '';
  if (!hit) { box.hidden = true; return; }
  let text = hit.name;
  if (hit.type === 'link') {
    const L = A.link.get(hit.name), st = linkState(A.view, L), ld = A.view.load[L.name];
    text = `${L.name} · ${st}${num(ld) ? ' · ' + fmt(ld, 2) + ' Mbit/s' : ''}`;
  } else {
    text = `${hit.name} · ${kindOf(A.node.get(hit.name).kind).label}`;
  }
  box.textContent = text;
  box.hidden = false;
  box.style.left = (pt.x + 14) + 'px';
  box.style.top = (pt.y + 10) + 'px';
}

function shapeSVG(kind, size = 14) {
  const k = kindOf(kind), c = size / 2, r = size * 0.36;
  let d;
  switch (k.shape) {
    case 'square': d = `<rect x="${c - r}" y="${c - r}" width="${2 * r}" height="${2 * r}"/>`; break;
    case 'diamond': d = `<polygon points="${c},${c - r * 1.3} ${c + r},${c} ${c},${c + r * 1.3} ${c - r},${c}"/>`; break;
    case 'triangle': d = `<polygon points="${c},${c - r * 1.15} ${c + r},${c + r * 0.75} ${c - r},${c + r * 0.75}"/>`; break;
    case 'invtri': d = `<polygon points="${c},${c + r * 1.15} ${c + r},${c - r * 0.75} ${c - r},${c - r * 0.75}"/>`; break;
    case 'hexagon': d = `<polygon points="${[0, 1, 2, 3, 4, 5].map((j) => `${c + r * Math.cos(j * Math.PI / 3)},${c + r * Math.sin(j * Math.PI / 3)}`).join(' ')}"/>`; break;
    default: d = `<circle cx="${c}" cy="${c}" r="${r}"/>`;
  }
  return `<svg class="shape" width="${size}" height="${size}" viewBox="0 0 ${size} ${size}" fill="${k.color}" stroke="#fff" stroke-width="1">${d}</svg>`;
}

function buildLegend() {
  M.kindsPresent = [...new Set(A.nodes.map((n) => n.kind))];
  const kinds = M.kindsPresent.map((k) => `<span>${shapeSVG(k)}${esc(kindOf(k).label)}</span>`).join('');
  const states = ['up', 'down', 'handover', 'unusable'].map((s) =>
    `<span><i class="ln ln-${s}"></i>${s}</span>`).join('');
  $('legend').innerHTML = `<div>${kinds}</div><div>${states}<span class="muted">width ∝ load</span></div>`;
}

// ------------------------------------------------------------------ charts

const C = {charts: [], width: 400, cursorT: null, panel: null};

function chartSpecs() {
  const flowsOf = (field) => (f) => {
    if (!f.flows) return null;
    let out = null;
    for (const name in f.flows) {
      const v = f.flows[name] && f.flows[name][field];
      if (num(v)) (out || (out = {}))[name] = v;
    }
    return out;
  };
  const specs = [
    {id: 'rtt', title: 'Flows: RTT', unit: 'ms', extract: flowsOf('rtt_ms')},
    {id: 'goodput', title: 'Flows: goodput', unit: 'Mbit/s', extract: flowsOf('goodput_mbps')},
    {id: 'loss', title: 'Flows: loss', unit: '%', extract: flowsOf('loss_pct')},
  ];
  return specs.concat(seriesSpecs(A.topo.series || []));
}

/** A chart per group of the workload's declared series. */
function seriesSpecs(series) {
  const groups = new Map(), specs = [];
  for (const s of series) {
    A.declared.add(s.key);
    const g = s.group || 'workload';
    if (!groups.has(g)) groups.set(g, []);
    groups.get(g).push(s);
  }
  for (const [g, list] of groups) {
    const units = [...new Set(list.map((s) => s.unit || ''))];
    const keys = list.map((s) => s.key);
    specs.push({
      id: 'g-' + g, title: g, unit: units.length === 1 ? units[0] : '', fixed: keys,
      units: units.length > 1 ? new Map(list.map((s) => [s.key, s.unit || ''])) : null,
      labels: new Map(list.map((s) => [s.key, units.length === 1 ? s.label : `${s.label} (${s.unit})`])),
      extract: (f) => {
        if (!f.metrics) return null;
        let out = null;
        for (const k of keys) if (num(f.metrics[k])) (out || (out = {}))[k] = f.metrics[k];
        return out;
      },
    });
  }
  return specs;
}

/** A live run's workload often declares its series only once its first records exist (after
 *  the page loaded): on a metric no chart knows, ask the server for the declarations again
 *  (at most every 2 s) and add charts for the new groups, filled from the frames kept. */
let seriesAsked = 0;
function discoverSeries(f) {
  if (!f.metrics || !A.topo) return;
  let unknown = false;
  for (const k in f.metrics) if (!A.declared.has(k)) { unknown = true; break; }
  const now = performance.now();
  if (!unknown || now - seriesAsked < 2000) return;
  seriesAsked = now;
  getJSON('/api/topology').then((topo) => {
    const fresh = (topo.series || []).filter((s) => !A.declared.has(s.key));
    if (!fresh.length) return;
    const known = new Set(C.charts.map((c) => c.id));
    for (const spec of seriesSpecs(fresh)) {
      if (known.has(spec.id)) continue;
      const c = addChart(spec);
      for (let i = 0; i < A.frames.length; i++) chartIngest(c, A.frames[i], A.times[i]);
    }
    A.topo.series = (A.topo.series || []).concat(fresh);
    flushCharts(true);
    resizeCharts();
  }).catch(() => {});
}

function addChart(spec) {
  const c = Object.assign({x: [], cols: new Map(), keys: [], u: null, rebuild: true, dirty: false}, spec);
  for (const k of spec.fixed || []) { c.keys.push(k); c.cols.set(k, []); }
  c.box = document.createElement('div');
  c.box.className = 'chart';
  c.box.dataset.chart = c.id;
  c.box.hidden = true;
  $('charts').appendChild(c.box);
  C.charts.push(c);
  return c;
}

function initCharts() {
  for (const spec of chartSpecs()) addChart(spec);
  new ResizeObserver(() => resizeCharts()).observe($('charts'));
}

function chartIngest(c, f, t) {
  const vals = c.extract(f);
  if (!vals) return;
  for (const k in vals) {
    if (!c.cols.has(k)) { c.keys.push(k); c.cols.set(k, new Array(c.x.length).fill(null)); c.rebuild = true; }
  }
  c.x.push(t);
  for (const k of c.keys) c.cols.get(k).push(num(vals[k]) ? vals[k] : null);
  c.dirty = true;
}

function chartsIngest(f, t) {
  for (const c of C.charts) chartIngest(c, f, t);
  discoverSeries(f);
}

/** Charts span the frames kept: from the earliest to the newest. */
const xMax = () => Math.max(A.latestT, minT() + 1);

function seriesLabel(c, k) {
  if (c.labels) return c.labels.get(k) || k;
  return A.flowLabel.get(k) || k;
}

/** uPlot hook: events as vertical marks (red when ok is false). */
function drawEventMarks(u) {
  if (!A.events.length) return;
  const ctx = u.ctx, {top, height} = u.bbox, dpr = uPlot.pxRatio;
  ctx.save();
  ctx.lineWidth = 1.5 * dpr;
  for (const ev of A.events) {
    const x = Math.round(u.valToPos(ev.t, 'x', true));
    if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) continue;
    ctx.strokeStyle = ev.ok === false ? 'rgba(214,39,40,0.85)' : 'rgba(84,110,122,0.45)';
    ctx.setLineDash(ev.ok === false ? [] : [4 * dpr, 3 * dpr]);
    ctx.beginPath(); ctx.moveTo(x, top); ctx.lineTo(x, top + height); ctx.stroke();
  }
  ctx.restore();
}

function makePlot(target, {title, width, height, series, axes, scales, data}) {
  const cursorLine = document.createElement('div');
  cursorLine.className = 'tcursor';
  const u = new uPlot({
    width, height, title,
    scales: Object.assign({x: {time: false, range: () => [minT(), xMax()]}}, scales || {}),
    axes: axes || [{}, {}],
    series: [{label: 't', value: (_, v) => (v == null ? '–' : v.toFixed(1) + ' s')}].concat(series),
    cursor: {sync: {key: 'sagin-t'}, drag: {x: false, y: false}},
    legend: {live: true},
    hooks: {draw: [drawEventMarks]},
  }, data, target);
  u.over.appendChild(cursorLine);
  u._tcursor = cursorLine;
  u.over.addEventListener('click', () => {
    if (u.cursor.left == null || u.cursor.left < 0) return;
    seekTo(u.posToVal(u.cursor.left, 'x'));
  });
  return u;
}

function buildChart(c) {
  if (c.u) { c.u.destroy(); c.u = null; }
  const box = c.box;
  box.hidden = false;
  const axisValues = (_, vals) => vals.map((v) => (num(v) ? +v.toPrecision(4) + '' : ''));
  // a group whose series have different units: a scale per unit, the first two with an axis
  const unitOf = (k) => (c.units ? c.units.get(k) : null);
  const units = c.units ? [...new Set(c.keys.map(unitOf))] : [];
  const scales = {}, axes = [{size: 30, values: (_, vals) => vals.map((v) => v + ' s')}];
  if (!units.length) axes.push({size: 52, values: axisValues});
  units.forEach((un, j) => {
    scales['u' + j] = {};
    if (j < 2) {
      axes.push({scale: 'u' + j, side: j ? 1 : 3, size: 52, label: un, labelSize: 14, values: axisValues,
                 grid: {show: j === 0}, stroke: PALETTE[c.keys.findIndex((k) => unitOf(k) === un) % PALETTE.length]});
    }
  });
  c.u = makePlot(box, {
    title: c.unit ? `${c.title} (${c.unit})` : c.title,
    width: C.width, height: 180, scales, axes,
    series: c.keys.map((k, i) => ({
      label: seriesLabel(c, k), stroke: PALETTE[i % PALETTE.length], width: 1.5, spanGaps: true,
      value: (_, v) => fmtAuto(v), scale: units.length ? 'u' + units.indexOf(unitOf(k)) : 'y',
    })),
    data: [c.x, ...c.keys.map((k) => c.cols.get(k))],
  });
  c.rebuild = false;
  c.dirty = false;
}

function flushCharts(force) {
  for (const c of C.charts) {
    if (!c.x.length) continue;
    if (c.rebuild || !c.u) buildChart(c);
    else if (c.dirty || force) { c.u.setData([c.x, ...c.keys.map((k) => c.cols.get(k))]); c.dirty = false; }
    else if (c.xmax !== xMax()) c.u.setScale('x', {min: minT(), max: xMax()});   // time goes on
    c.xmax = xMax();
  }
  const empty = !C.charts.some((c) => c.x.length);
  $('charts').classList.toggle('empty', empty);
}

function resizeCharts() {
  const wrap = $('charts');
  const cols = wrap.clientWidth > 900 ? 2 : 1;
  C.width = Math.max(280, Math.floor((wrap.clientWidth - (cols - 1) * 12) / cols) - 2);
  for (const c of C.charts) if (c.u) c.u.setSize({width: C.width, height: 180});
  if (C.panel) C.panel.setSize({width: panelChartWidth(), height: 150});
}

/** Move every chart's time cursor to the displayed time. */
function updateChartCursors() {
  if (C.cursorT === A.T) return;
  C.cursorT = A.T;
  const place = (u) => {
    if (!u) return;
    const x = u.valToPos(A.T, 'x');
    u._tcursor.style.transform = `translateX(${x}px)`;
    u._tcursor.style.display = num(x) ? '' : 'none';
  };
  for (const c of C.charts) place(c.u);
  place(C.panel);
  C.legendDirty = true;
}

/** Legends show each series' last value at the displayed time while the mouse is elsewhere. */
function legendsAtT() {
  const set = (u) => {
    if (!u || (u.cursor.left != null && u.cursor.left >= 0)) return;
    const xs = u.data[0], i = upperBound(xs, A.T) - 1;
    if (i < 0) return;
    const idxs = u.data.map((col, k) => {
      if (k === 0) return i;
      for (let j = i; j >= 0 && j > i - 200; j--) if (col[j] != null) return j;
      return null;
    });
    u.setLegend({idxs}, false);
  };
  for (const c of C.charts) set(c.u);
  set(C.panel);
}

// ------------------------------------------------------------------ panels

function select(sel) {
  A.selected = sel && (sel.type === 'node' ? A.node.has(sel.name) : A.link.has(sel.name)) ? sel : null;
  document.querySelectorAll('.list li.sel').forEach((li) => li.classList.remove('sel'));
  if (A.selected) {
    const li = document.querySelector(A.selected.type === 'node'
      ? `#nodes-list li[data-node="${CSS.escape(A.selected.name)}"]`
      : `#links-list li[data-link="${CSS.escape(A.selected.name)}"]`);
    if (li) { li.classList.add('sel'); li.scrollIntoView({block: 'nearest'}); }
  }
  if (C.panel) { C.panel.destroy(); C.panel = null; }
  A.dirty = true;
  renderDetails();
}

const stateDot = (st) => `<i class="dot" style="background:${STATE_COLORS[st] || '#999'}"></i>`;
const nodeRef = (n) => `<a href="#" data-sel-node="${esc(n)}">${esc(n)}</a>`;
const linkRef = (n) => `<a href="#" data-sel-link="${esc(n)}">${esc(n)}</a>`;

function fmtPos(p) {
  if (!p) return '–';
  if (A.geo) return `${fmt(p[0], 4)}°, ${fmt(p[1], 4)}° · ${fmt(p[2] || 0, 2)} km`;
  return `E ${fmt(p[0], 1)} m, N ${fmt(p[1], 1)} m, up ${fmt(p[2] || 0, 1)} m`;
}

function renderDetails() {
  const box = $('details'), sel = A.selected, v = A.view;
  if (!sel) {
    box.innerHTML = '<p class="muted">Click a node or a link on the map, or pick one from the lists below.</p>';
    return;
  }
  let html;
  if (sel.type === 'node') {
    const nd = A.node.get(sel.name), st = v.nodes[nd.name] || {};
    const ho = v.lastHandover[nd.name];
    const rows = [
      ['kind', `${shapeSVG(nd.kind, 12)} ${esc(kindOf(nd.kind).label)}`],
      ['position', fmtPos(v.pos[nd.name] || nd.pos0)],
      ['IP', esc(nd.ip || '–')],
      ['CPU', num(st.cpu_pct) ? fmt(st.cpu_pct, 1) + ' %' : '–'],
    ];
    if (num(st.battery_pct)) rows.push(['battery', `<span class="bar"><i style="width:${Math.max(0, Math.min(100, st.battery_pct))}%"></i></span> ${fmt(st.battery_pct, 1)} %`]);
    for (const k of Object.keys(st)) {         // anything else the node reports (mode, armed, ...)
      if (k === 'cpu_pct' || k === 'battery_pct') continue;
      const val = st[k];
      if (val === null || typeof val === 'object') continue;
      rows.push([esc(k.replace(/_/g, ' ')), typeof val === 'number' ? fmtAuto(val) : esc(String(val))]);
    }
    if (v.attach[nd.name]) rows.push(['attached to', nodeRef(v.attach[nd.name])]);
    if (ho) rows.push(['last handover', `t=${fmt(ho.t, 1)} s: ${esc(ho.from || '–')} → ${esc(ho.to)}`]);
    const links = nd.links.map((L) => {
      const s = linkState(v, L), other = L.ends.filter((e) => e !== nd.name).slice(0, 3).join(', ');
      return `<tr><td>${stateDot(s)}${linkRef(L.name)}</td><td>${esc(other)}</td><td>${s}</td><td class="r">${fmt(v.load[L.name], 2)}</td></tr>`;
    }).join('');
    html = `<h3>${shapeSVG(nd.kind)} ${esc(nd.name)}</h3>
      <table class="kv">${rows.map(([k, val]) => `<tr><th>${k}</th><td>${val}</td></tr>`).join('')}</table>
      <h4>Links (${nd.links.length})</h4>
      <table class="tbl"><tr><th>link</th><th>to</th><th>state</th><th class="r">Mbit/s</th></tr>${links}</table>`;
  } else {
    const L = A.link.get(sel.name), s = linkState(v, L), cur = v.links[L.name] || {}, conf = L.configured || {};
    const rtt = v.rtt[L.name], load = v.load[L.name];
    const row = (name, c, now, meas) => `<tr><th>${name}</th><td class="r">${fmt(c, 2)}</td><td class="r">${fmt(now, 2)}</td><td class="r">${meas}</td></tr>`;
    html = `<h3>${stateDot(s)} ${esc(L.name)} <span class="state st-${s}">${s}</span></h3>
      <table class="kv">
        <tr><th>medium</th><td>${esc(L.medium || '–')}</td></tr>
        <tr><th>role</th><td>${esc(L.role || '–')}${L.dynamic ? ' (dynamic)' : ''}</td></tr>
        <tr><th>ends</th><td>${L.ends.map(nodeRef).join(' — ')}</td></tr>
      </table>
      <table class="tbl"><tr><th></th><th class="r">configured</th><th class="r">current</th><th class="r">measured</th></tr>
        ${row('delay ms', conf.delay_ms, cur.delay_ms, num(rtt) ? `${fmt(rtt / 2, 2)} <span class="muted">(rtt/2)</span>` : '–')}
        ${row('rate Mbit/s', conf.rate_mbps, cur.rate_mbps, num(load) ? `${fmt(load, 2)} <span class="muted">(load)</span>` : '–')}
        ${row('loss %', conf.loss_pct, cur.loss_pct, '–')}
      </table>
      <h4>Load and RTT</h4><div id="det-chart"></div>
      <h4>State history</h4><ul class="history">${linkHistory(L).slice(-30).reverse().map((h) =>
        `<li>${stateDot(h.state)}<span class="t">t=${fmt(h.t, 1)} s</span> ${h.state}</li>`).join('')}</ul>`;
  }
  box.innerHTML = html;
  if (sel.type === 'link') renderLinkChart(A.link.get(sel.name));
}

/** State changes of a link over the frames shown so far. */
function linkHistory(L) {
  const out = [], first = A.snaps.find((sn) => sn.n === A.base);
  const probe = {links: first && first.links[L.name] ? {[L.name]: Object.assign({}, first.links[L.name])} : {}};
  let prev = linkState(probe, L);
  out.push({t: minT(), state: prev});
  for (let i = 0; i < A.view.n - A.base; i++) {
    const f = A.frames[i];
    if (!f.links || !f.links[L.name]) continue;
    mergeInto(probe.links, L.name, f.links[L.name]);
    const s = linkState(probe, L);
    if (s !== prev) { out.push({t: A.times[i], state: s}); prev = s; }
  }
  return out;
}

const panelChartWidth = () => Math.max(200, $('details').clientWidth - 24);

function renderLinkChart(L) {
  const target = $('det-chart');
  if (!target) return;
  const x = [], load = [], rtt = [];
  for (let i = 0; i < A.frames.length; i++) {
    const f = A.frames[i];
    const a = f.load && f.load[L.name], b = f.rtt && f.rtt[L.name];
    if (!num(a) && !num(b)) continue;
    x.push(A.times[i]); load.push(num(a) ? a : null); rtt.push(num(b) ? b : null);
  }
  C.cursorT = null;
  if (C.panel && C.panelLink === L.name && x.length) {   // the same link: keep its chart, new data
    target.appendChild(C.panel.root);
    C.panel.setData([x, load, rtt]);
    return;
  }
  if (C.panel) C.panel.destroy();
  C.panelLink = L.name;
  if (!x.length) { C.panel = null; target.innerHTML = '<p class="muted">no measurements yet</p>'; return; }
  C.panel = makePlot(target, {
    width: panelChartWidth(), height: 150,
    scales: {ms: {}},
    axes: [{size: 26, values: (_, vals) => vals.map((v) => v + ' s')},
           {size: 40, stroke: PALETTE[0]},
           {scale: 'ms', side: 1, size: 40, grid: {show: false}, stroke: PALETTE[1]}],
    series: [{label: 'load Mbit/s', stroke: PALETTE[0], width: 1.5, spanGaps: true, value: (_, v) => fmtAuto(v)},
             {label: 'RTT ms', scale: 'ms', stroke: PALETTE[1], width: 1.5, spanGaps: true, value: (_, v) => fmtAuto(v)}],
    data: [x, load, rtt],
  });
}

function buildLists() {
  const nl = $('nodes-list'), ll = $('links-list');
  nl.innerHTML = A.nodes.map((nd) => `<li data-node="${esc(nd.name)}" data-kind="${esc(nd.kind)}">${shapeSVG(nd.kind, 12)}<span class="nm">${esc(nd.name)}</span><span class="meta"></span></li>`).join('');
  ll.innerHTML = A.links.map((L) => `<li data-link="${esc(L.name)}" data-state=""><i class="dot"></i><span class="nm">${esc(L.name)}</span><span class="meta"></span></li>`).join('');
  A.nodeLi = [...nl.children];
  A.linkLi = [...ll.children];
  A.linkLiState = A.links.map(() => '');
  A.linkLiMeta = A.links.map(() => null);
  A.nodeLiMeta = A.nodes.map(() => null);
  $('nodes-count').textContent = `(${A.nodes.length})`;
  $('links-count').textContent = `(${A.links.length})`;
  nl.addEventListener('click', (e) => { const li = e.target.closest('li'); if (li) select({type: 'node', name: li.dataset.node}); });
  ll.addEventListener('click', (e) => { const li = e.target.closest('li'); if (li) select({type: 'link', name: li.dataset.link}); });
  const filter = (input, items, text) => input.addEventListener('input', () => {
    const q = input.value.trim().toLowerCase();
    items.forEach((li, i) => { li.hidden = q !== '' && !text(i).toLowerCase().includes(q); });
  });
  filter($('nodes-filter'), A.nodeLi, (i) => `${A.nodes[i].name} ${A.nodes[i].kind}`);
  filter($('links-filter'), A.linkLi, (i) => `${A.links[i].name} ${A.links[i].ends.join(' ')} ${A.linkLiState[i]} ${A.links[i].role || ''}`);
  $('details').addEventListener('click', (e) => {
    const a = e.target.closest('a');
    if (!a) return;
    e.preventDefault();
    if (a.dataset.selNode) select({type: 'node', name: a.dataset.selNode});
    else if (a.dataset.selLink) select({type: 'link', name: a.dataset.selLink});
  });
  $('events-list').addEventListener('click', (e) => {
    const li = e.target.closest('li');
    if (li) seekTo(+li.dataset.t);
  });
}

/** Keep the lists' data-state current; their text (loads, CPU) too when full. */
function updateLists(full = true) {
  const v = A.view;
  const counts = {up: 0, down: 0, unusable: 0, handover: 0};
  A.links.forEach((L, i) => {
    const st = linkState(v, L);
    counts[st] = (counts[st] || 0) + 1;
    const li = A.linkLi[i];
    if (A.linkLiState[i] !== st) {
      A.linkLiState[i] = st;
      li.dataset.state = st;
      li.firstChild.style.background = STATE_COLORS[st] || '#999';
    }
    if (!full) return;
    const ld = v.load[L.name];
    const meta = `${L.ends.length > 2 ? L.ends[0] + ' +' + (L.ends.length - 1) : L.ends.join('–')} · ${num(ld) ? fmt(ld, 1) + ' Mb/s' : st}`;
    if (A.linkLiMeta[i] !== meta) { A.linkLiMeta[i] = meta; li.lastChild.textContent = meta; }
  });
  $('links-count').textContent = `(${A.links.length}: ${counts.up} up, ${counts.down} down, ${counts.handover} handover, ${counts.unusable} unusable)`;
  if (!full) return;
  A.nodes.forEach((nd, i) => {
    const st = v.nodes[nd.name], att = v.attach[nd.name];
    const parts = [kindOf(nd.kind).label];
    if (st && num(st.cpu_pct)) parts.push(`cpu ${fmt(st.cpu_pct, 0)}%`);
    if (st && num(st.battery_pct)) parts.push(`bat ${fmt(st.battery_pct, 0)}%`);
    if (att) parts.push('→ ' + att);
    const meta = parts.join(' · ');
    if (A.nodeLiMeta[i] !== meta) { A.nodeLiMeta[i] = meta; A.nodeLi[i].lastChild.textContent = meta; }
  });
}

function updateEvents() {
  if (!A.eventsDirty) return;
  A.eventsDirty = false;
  $('events-count').textContent = `(${A.events.length}${A.events.some((e) => e.ok === false) ? ', ' + A.events.filter((e) => e.ok === false).length + ' failed' : ''})`;
  $('events-list').innerHTML = A.events.map((ev) =>
    `<li data-t="${ev.t}" class="${ev.ok === false ? 'bad' : ''}" title="${esc(ev.error || '')}"><span class="t">${fmt(ev.t, 1)} s</span> ${esc(ev.text || ev.action || 'event')}${ev.ok === false ? ' <b>failed</b>' + (ev.error ? ': ' + esc(ev.error) : '') : ''}</li>`).join('');
  buildSliderMarks();
  for (const c of C.charts) if (c.u) c.u.redraw(false);
}

function renderHeader() {
  const run = (A.topo && A.topo.run) || {};
  $('scenario').textContent = run.scenario || 'scenario';
  $('runid').textContent = run.run_id || '';
  const badge = $('badge');
  badge.textContent = A.live ? 'LIVE' : 'REPLAY';
  badge.className = 'badge ' + (A.live ? 'live' : 'replay');
  $('headline').innerHTML = (run.headline || []).map((h) => `<li>${esc(h)}</li>`).join('');
  document.title = `${run.scenario || 'SAGIN-HIL'} · ${A.live ? 'live' : 'replay'} view`;
}

/** Live: how far the newest frame is behind the run's clock (null once the run is over). */
const behindS = () => (A.live && !A.ended && num(A.nowT) ? Math.max(0, A.nowT - A.latestT) : null);

function updateHeader() {
  const run = (A.topo && A.topo.run) || {};
  let status = run.status || '–';
  if (A.live && A.ended) status = run.status && run.status !== 'running' ? run.status : 'ended';
  if (run.phase && run.phase !== status) status += ` · ${run.phase}`;
  $('status').textContent = status;
  $('time').textContent = `${fmt(A.T, 1)} s`;
  const behind = behindS();
  $('behind-box').hidden = !A.live;
  $('behind').textContent = num(behind) ? `${fmt(behind, 1)} s` : '–';
  $('behind').classList.toggle('warn', num(behind) && behind > 5);
  $('dropped').textContent = String(A.dropped);
  $('dropped').classList.toggle('warn', A.dropped > 0);
  $('fps').textContent = fmt(fpsNow(), 0);
}

function showError(msg) {
  const e = $('error');
  e.textContent = msg;
  e.hidden = !msg;
}

// ------------------------------------------------------------------ timeline

function initTimeline() {
  const slider = $('slider');
  slider.addEventListener('input', () => {
    A.following = false;
    showTime(+slider.value, false);
    A.sliderDrag = true;
  });
  slider.addEventListener('change', () => { A.sliderDrag = false; });
  $('play').addEventListener('click', () => {
    if (A.following || A.playing) { A.following = false; A.playing = false; }
    else {
      if (A.T >= A.latestT - 0.05 && A.ended) showTime(0, false);
      A.playing = true;
    }
    updateTimeline();
  });
  $('speed').addEventListener('change', (e) => { A.speed = +e.target.value || 1; });
  $('follow').addEventListener('click', () => { A.following = true; A.playing = false; A.smoothT = A.latestT; updateTimeline(); });
  $('follow').hidden = !A.live;
  // keys: space plays / pauses, arrows step a second (5 with shift), Home / End
  document.addEventListener('keydown', (e) => {
    if (e.target.closest('input, select, textarea, .leaflet-container') || e.ctrlKey || e.metaKey || e.altKey) return;
    const step = e.shiftKey ? 5 : 1;
    if (e.key === ' ') { e.preventDefault(); $('play').click(); }
    else if (e.key === 'ArrowLeft') seekTo(A.T - step);
    else if (e.key === 'ArrowRight') seekTo(A.T + step);
    else if (e.key === 'Home') seekTo(minT());
    else if (e.key === 'End') { if (A.live) $('follow').click(); else seekTo(A.latestT); }
  });
}

function seekTo(t) {
  if (!num(t)) return;
  A.following = false;
  showTime(t, false);
  updateTimeline();
  updateHeader();
}

function updateTimeline() {
  const slider = $('slider');
  const max = Math.max(A.latestT, 0);
  if (+slider.max !== max) { slider.max = String(max); A.marksDirty = true; }
  if (+slider.min !== minT()) { slider.min = String(minT()); A.marksDirty = true; }
  if (!A.sliderDrag) slider.value = String(A.T);
  const advancing = A.following || A.playing;
  $('play').textContent = advancing ? '❚❚' : '▶';
  $('play').title = advancing ? 'pause' : 'play';
  $('follow').classList.toggle('on', A.following);
  $('tlabel').textContent = `${fmt(A.T, 1)} / ${fmt(A.latestT, 1)} s`;
  if (A.marksDirty) buildSliderMarks();
}

function buildSliderMarks() {
  A.marksDirty = false;
  const lo = minT(), span = Math.max(A.latestT - lo, 1e-9);
  $('slider-marks').innerHTML = A.events.filter((ev) => ev.t >= lo).map((ev) =>
    `<i class="${ev.ok === false ? 'bad' : ''}" style="left:${(100 * (ev.t - lo) / span).toFixed(3)}%" title="${esc(`${fmt(ev.t, 1)} s: ${ev.text || ''}`)}"></i>`).join('');
}

// ------------------------------------------------------------------ main loop and polling

const ticks = [];
function fpsNow() {
  const now = performance.now();
  while (ticks.length && ticks[0] < now - 2000) ticks.shift();
  if (ticks.length < 2) return 0;
  return (ticks.length - 1) / ((ticks[ticks.length - 1] - ticks[0]) / 1000);
}

let lastTick = performance.now(), lastUi = 0, lastChartFlush = 0, afterDraw = [], bench = null;

function moving() {
  if (!A.nodes.some((n) => n.moving && n.track)) return false;
  return A.playing || (A.following && A.smoothT < A.latestT - 1e-6);
}

function tick(now) {
  const dt = Math.min(0.25, Math.max(0, (now - lastTick) / 1000));
  lastTick = now;
  ticks.push(now);
  if (A.ready) {
    if (A.following) {
      if (A.T !== A.latestT) showTime(A.latestT, true);
      const gap = A.latestT - A.smoothT;
      if (gap > 10 || gap < 0) A.smoothT = A.latestT;
      else if (gap > 0) A.smoothT = Math.min(A.latestT, A.smoothT + dt * Math.max(0.3, gap / 0.8));
    } else if (A.playing) {
      let T = A.T + dt * A.speed;
      if (T >= A.latestT) {
        T = A.latestT;
        if (A.live && !A.ended) { A.following = true; A.smoothT = T; }
        A.playing = false;
      }
      showTime(T, true);
    }
  }
  if (bench) benchTick(now);
  else if (A.ready && (A.dirty || A.anims.length || moving()) && now - lastDraw >= 1000 / FPS_CAP - 4) {
    lastDraw = now;
    draw();
    A.dirty = false;
    const cbs = afterDraw; afterDraw = [];
    for (const cb of cbs) cb();
  }
  if (A.ready) {
    updateChartCursors();
    if (now - lastUi > 250) {
      lastUi = now;
      updateHeader();
      updateTimeline();
      updateEvents();
      if (!M.userMoved && now - (M.fitAt || 0) > 1000) { M.fitAt = now; autoFit(); }
      if (A.uiDirty) {
        A.uiDirty = false;
        const full = now - (A.listsAt || 0) > 1000;   // loads and CPU: once a second
        if (full) A.listsAt = now;
        updateLists(full);
        if (A.selected) {
          if (!A.detailsTimer || now - A.detailsTimer > 1000) { A.detailsTimer = now; renderDetails(); }
          else A.uiDirty = true;
        }
      }
    }
    if (now - lastChartFlush > 500) { lastChartFlush = now; flushCharts(); C.legendDirty = true; }
    if (C.legendDirty && now - (C.legendAt || 0) > 100) { C.legendAt = now; C.legendDirty = false; legendsAtT(); }
  }
  requestAnimationFrame(tick);
}

async function poll() {
  let errors = 0;
  for (;;) {
    try {
      const r = await getJSON(`/api/frames?since=${A.next}`);
      A.dropped += r.dropped || 0;
      A.nowT = num(r.now_t) ? r.now_t : A.nowT;
      if (r.status && A.topo.run) A.topo.run.status = r.status;
      if ('phase' in r && A.topo.run) A.topo.run.phase = r.phase;
      if (r.frames && r.frames.length) {
        ingest(r.frames);
        // live: the age of the freshest data on arrival (run clock at the answer - its time);
        // unlike `behind`, quiet stretches with nothing to send do not count
        if (A.live && !r.ended && num(r.now_t)) {
          let newest = -Infinity;
          for (const f of r.frames) if (f.t > newest) newest = f.t;
          A.lags.push(Math.max(0, r.now_t - newest));
          if (A.lags.length > 20000) A.lags.splice(0, 10000);
        }
      }
      A.next = num(r.next) ? r.next : A.next;
      errors = 0;
      showError('');
      if (r.ended && !A.ended) {
        A.ended = true;
        if (A.live) getJSON('/api/topology').then((t) => { A.topo.run = t.run; renderHeader(); }).catch(() => {});
      }
      const more = r.frames && r.frames.length >= 2000;
      if (!A.ready && (A.live || A.ended) && !more) onFirstBatch();
      if (A.ended && !more) return;
      if (!more) await new Promise((res) => setTimeout(res, 250));
    } catch (e) {
      errors += 1;
      if (errors >= 3) showError(`lost the server (${e.message}); retrying…`);
      await new Promise((res) => setTimeout(res, Math.min(5000, 250 * 2 ** errors)));
    }
  }
}

function onFirstBatch() {
  A.smoothT = A.latestT;
  showTime(A.latestT, false);
  fitNodes();
  flushCharts(true);
  resizeCharts();
  updateLists();
  A.ready = true;
  A.dirty = true;
}

// ------------------------------------------------------------------ test API

function benchTick(now) {
  M.jitter = 2;
  A.dirty = true;
  const t0 = performance.now();
  draw();
  bench.ms.push(performance.now() - t0);
  bench.frames += 1;
  if (now >= bench.end) {
    M.jitter = 0;
    const ms = bench.ms.slice().sort((a, b) => a - b);
    const q = (p) => ms[Math.min(ms.length - 1, Math.floor(p * ms.length))];
    const secs = (now - bench.start) / 1000;
    const out = {fps: bench.frames / secs, frames: bench.frames, draw_ms_p50: q(0.5), draw_ms_p95: q(0.95),
                 nodes: A.nodes.length, links: A.links.length};
    const done = bench.done;
    bench = null;
    done(out);
  }
}

window.saginView = {
  get ready() { return A.ready; },
  get mode() { return A.live ? 'live' : 'replay'; },
  get t() { return A.T; },
  get latestT() { return A.latestT; },
  get framesApplied() { return A.view ? A.view.n : 0; },
  get dropped() { return A.dropped; },
  /** Live: how far the newest frame is behind the run's clock (now_t - latestT), s. */
  get behind() { return behindS(); },
  /** Live: per answer that brought frames, the age of its newest frame on arrival, s. */
  lags() { return A.lags.slice(); },
  link(name) {
    const L = A.link.get(name);
    if (!L) return null;
    const st = linkState(A.view, L), load = A.view.load[name];
    return {state: st, color: STATE_COLORS[st], width: drawnWidth(st, load),
            load: num(load) ? load : null};
  },
  node(name) {
    const nd = A.node.get(name);
    if (!nd) return null;
    return {kind: nd.kind, pos: A.view.pos[name] || nd.pos0, label: nd.name};
  },
  attachment(terminal) { return (A.view && A.view.attach[terminal]) || null; },
  seek(t) {
    A.playing = false;
    seekTo(+t);
    A.dirty = true;
    return new Promise((res) => afterDraw.push(() => res(A.T)));
  },
  fps() { return fpsNow(); },
  benchmark(seconds) {
    if (bench) return Promise.reject(new Error('a benchmark is running'));
    return new Promise((done) => {
      const now = performance.now();
      bench = {start: now, end: now + 1000 * (+seconds || 5), frames: 0, ms: [], done};
    });
  },
  select(type, name) { select(type ? {type, name} : null); },
  /** Leave parts out of the drawing (profiling): grid, footprints, trails, links, nodes, labels. */
  skip(...parts) { M.skip = new Set(parts); A.dirty = true; },
  get state() { return A.view; },
};

// ------------------------------------------------------------------ start

async function main() {
  if (!window.L || !window.uPlot || !window.topojson) {
    showError("the view's web assets did not load (leaflet, uplot, topojson-client): run `make setup`");
    return;
  }
  let topo;
  try {
    topo = await getJSON('/api/topology');
  } catch (e) {
    showError(`cannot load the topology: ${e.message}`);
    return;
  }
  initTopology(topo);
  renderHeader();
  initMap();
  initCharts();
  buildLists();
  initTimeline();
  requestAnimationFrame(tick);
  poll();
}

main();
})();
