// The live map: entities from the NGSI-LD API, changes from the live stream, history from the
// temporal API, commands by PATCH. Uses only citytwin's public API.
import * as maplibregl from '/assets/maplibre-gl/dist/maplibre-gl.mjs';

const API = '/ngsi-ld/v1';
const TYPES = ['PointOfInterest', 'AirQualityObserved', 'Robot'];
const CHARTED = ['pm25', 'airQualityIndex', 'batteryLevel', 'no2', 'o3', 'temperature'];
const EXHIBITS = ['Spectrum of Life', 'Earth Exploration', 'Light of Wisdom', 'Robot World',
  'Space Navigation', 'Information Era', 'entrance'];
const entities = new Map();  // id -> normalized entity
const counts = new Map();  // type -> points on its layer
let selected = null;

const map = new maplibregl.Map({
  container: 'map',
  center: [121.50, 31.17],
  zoom: 9.3,
  attributionControl: { customAttribution: 'Land: Natural Earth (public domain)' },
  style: {
    version: 8,
    sources: { land: { type: 'geojson', data: '/citytwin/v1/basemap' } },
    layers: [
      { id: 'sea', type: 'background', paint: { 'background-color': '#b9d3e6' } },
      { id: 'land', type: 'fill', source: 'land', paint: { 'fill-color': '#f1eee4' } },
    ],
  },
});
window.citytwinMap = map;  // for tests and the curious

const value = (e, name) => e[name] && (e[name].value ?? e[name].object);
const point = (e) => e.location && e.location.value;

function feature(e) {
  return {
    type: 'Feature', id: e.id, geometry: point(e),
    properties: { id: e.id, aqi: value(e, 'airQualityIndex') ?? -1,
                  state: value(e, 'state') ?? '', battery: value(e, 'batteryLevel') ?? 100 },
  };
}

function refresh(type) {
  const source = map.getSource(type);
  if (!source) return;
  const features = [...entities.values()].filter((e) => e.type === type && point(e)).map(feature);
  counts.set(type, features.length);
  source.setData({ type: 'FeatureCollection', features });
}

const PAINT = {
  PointOfInterest: { 'circle-radius': 7, 'circle-color': '#6a4c93', 'circle-opacity': 0.8,
                     'circle-stroke-color': '#fff', 'circle-stroke-width': 1.5 },
  AirQualityObserved: {
    'circle-radius': 11, 'circle-stroke-color': '#fff', 'circle-stroke-width': 2,
    'circle-color': ['step', ['get', 'aqi'], '#999', 0, '#3cb44b', 51, '#e6d200', 101, '#f58231',
                     151, '#e6194b', 201, '#911eb4', 301, '#800000'],
  },
  Robot: {
    'circle-radius': ['interpolate', ['linear'], ['zoom'], 10, 5, 17, 10],
    'circle-color': ['match', ['get', 'state'], 'moving', '#1e88e5', 'greeting', '#43a047',
                     'charging', '#fb8c00', '#546e7a'],
    'circle-stroke-width': 3,
    'circle-stroke-color': ['step', ['get', 'battery'], '#e53935', 20, '#fdd835', 50, '#ffffff'],
  },
};

async function load(type) {
  for (let offset = 0; ; offset += 1000) {  // a page at a time: a big city has many thousands
    const got = await (await fetch(`${API}/entities?type=${type}&limit=1000&offset=${offset}`)).json();
    for (const e of got) entities.set(e.id, e);
    if (got.length < 1000) break;
  }
  map.addSource(type, { type: 'geojson', data: { type: 'FeatureCollection', features: [] } });
  map.addLayer({ id: type, type: 'circle', source: type, paint: PAINT[type] });
  map.on('click', type, (ev) => show(ev.features[0].properties.id));
  map.on('mouseenter', type, () => { map.getCanvas().style.cursor = 'pointer'; });
  map.on('mouseleave', type, () => { map.getCanvas().style.cursor = ''; });
  refresh(type);
}

function follow() {
  const live = new EventSource(`/citytwin/v1/stream?type=${TYPES.join(',')}`);
  const status = document.getElementById('live');
  live.onopen = () => { status.textContent = 'live'; };
  live.onerror = () => { status.textContent = 'reconnecting...'; };
  live.addEventListener('notification', (event) => {
    const arrived = Date.now();
    for (const e of JSON.parse(event.data).data) {
      entities.set(e.id, { ...(entities.get(e.id) || {}), ...e });
      dirty.add(e.type);
      if (selected === e.id) render(entities.get(e.id));
      if (lags) lags.push(arrived - changedAt(e));
    }
    if (!frame) frame = requestAnimationFrame(redraw);
  });
}

// changes arrive by the thousand a second in a big city: redraw a layer at most once a frame,
// and a big one (each redraw re-tiles all its points) at most every BIG_EVERY ms
const BIG = 2000, BIG_EVERY = 250;
const dirty = new Set();
const drawn = new Map();  // type -> when last redrawn
let frame = 0;
function redraw(now) {
  frame = 0;
  for (const type of [...dirty]) {
    const big = (counts.get(type) || 0) > BIG;
    if (big && now - (drawn.get(type) || 0) < BIG_EVERY) continue;
    refresh(type);
    drawn.set(type, now);
    dirty.delete(type);
  }
  if (dirty.size) frame = requestAnimationFrame(redraw);
  document.getElementById('live').textContent = `live, ${new Date().toLocaleTimeString()}`;
}

// ?measure: keep the delay of every change (its newest observedAt to its arrival) for bench/
const lags = new URLSearchParams(location.search).has('measure') ? [] : null;
window.citytwinLags = lags;
function changedAt(e) {
  const times = Object.values(e).filter((a) => a && a.observedAt).map((a) => Date.parse(a.observedAt));
  return times.length ? Math.max(...times) : Date.now();
}

function show(id) {
  selected = id;
  document.getElementById('panel').hidden = false;
  render(entities.get(id));
  chart(entities.get(id));
}

function render(e) {
  document.getElementById('name').textContent = value(e, 'name') || e.id;
  document.getElementById('kind').textContent = `${e.type} · ${e.id}`;
  const rows = Object.entries(e).filter(([k, a]) => a && typeof a === 'object' && a.type)
    .filter(([k]) => !k.endsWith('_info') && !k.endsWith('_status') && !COMMANDS.includes(k));
  document.getElementById('attrs').innerHTML = rows.map(([k, a]) => `<tr><td title="${k}">${label(k)}</td>
    <td>${shown(a)}</td><td class="unit">${unit(a)}</td>
    <td class="time">${a.observedAt ? new Date(a.observedAt).toLocaleTimeString() : ''}</td></tr>`).join('');
  commands(e);
}

// what the attributes mean, for people who do not read NGSI-LD (the name itself is the tooltip)
const LABELS = {
  pm25: 'PM2.5', pm10: 'PM10', no2: 'NO\u2082', o3: 'Ozone (O\u2083)', temperature: 'Temperature',
  airQualityIndex: 'Air quality index', airQualityLevel: 'Air quality', dataProvider: 'Data from',
  refPointOfInterest: 'Next to', batteryLevel: 'Battery', state: 'Doing', currentTask: 'Task',
  nearExhibit: 'Near', location: 'Position', description: 'About', category: 'Kind',
  address: 'Address', name: 'Name', dateObserved: 'Observed',
};
const UNITS = { GQ: '\u00b5g/m\u00b3', CEL: '\u00b0C', P1: '%', MTR: 'm', KMH: 'km/h' };  // UN/CEFACT codes
const label = (name) => LABELS[name] || name.replace(/([a-z])([A-Z])/g, '$1 $2').toLowerCase();
const unit = (a) => (a && a.unitCode ? UNITS[a.unitCode] || a.unitCode : '');

function shown(a) {
  const v = a.value ?? a.object;
  if (a.type === 'GeoProperty' && v && v.type === 'Point') return v.coordinates.map((c) => c.toFixed(5)).join(', ');
  const linked = a.type === 'Relationship' && entities.get(v);  // a link: the name of what it links to
  const text = linked ? value(linked, 'name') || v
    : Array.isArray(v) && v.every((x) => typeof x !== 'object') ? v.join(', ')
    : typeof v === 'object' ? JSON.stringify(v) : String(v);
  return text.replace(/[&<>]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;' }[c]));
}

const COMMANDS = ['goTo', 'greet', 'dock'];

function commands(e) {
  const box = document.getElementById('commands');
  if (e.type !== 'Robot') { box.innerHTML = ''; return; }
  if (!box.dataset.for || box.dataset.for !== e.id) {
    box.dataset.for = e.id;
    box.innerHTML = `<select id="exhibit">${EXHIBITS.map((x) => `<option>${x}</option>`).join('')}</select>
      <button data-cmd="goTo">Go to</button><button data-cmd="greet">Greet</button>
      <button data-cmd="dock">Dock</button><div id="statuses"></div>`;
    box.querySelectorAll('button').forEach((b) => { b.onclick = () => send(e.id, b.dataset.cmd); });
  }
  document.getElementById('statuses').innerHTML = COMMANDS.map((c) => {
    const s = value(e, `${c}_status`) || 'UNKNOWN';
    const info = value(e, `${c}_info`) || '';
    return `<div><b>${c}</b> <span class="status ${s}" data-command="${c}">${s}</span> ${shown({ value: info })}</div>`;
  }).join('');
}

async function send(id, cmd) {
  const v = cmd === 'goTo' ? document.getElementById('exhibit').value : cmd === 'greet' ? 'ni hao' : '';
  await fetch(`${API}/entities/${encodeURIComponent(id)}/attrs/${cmd}`, {
    method: 'PATCH', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ type: 'Property', value: v }),
  });
}

// the last hour: every reading; the last day: 15-minute averages, which the broker computes
const SPANS = {
  hour: { ms: 3600e3, query: 'options=temporalValues&lastN=500', key: 'values', text: 'last hour' },
  day: { ms: 86400e3, query: 'options=aggregatedValues&aggrMethods=avg&aggrPeriodDuration=PT15M',
         key: 'avg', text: 'last day, 15-minute averages' },
};
let span = 'hour';

async function chart(e) {
  const name = CHARTED.find((n) => typeof value(e, n) === 'number');
  const svg = document.getElementById('chart');
  const caption = document.getElementById('chart-label');
  svg.innerHTML = '';
  caption.textContent = name ? '' : 'no numeric measurement to chart';
  if (!name) return;
  const { ms, query, key, text } = SPANS[span];
  const since = new Date(Date.now() - ms).toISOString();
  const got = await fetch(`${API}/temporal/entities/${encodeURIComponent(e.id)}?attrs=${name}` +
    `&timerel=after&timeAt=${since}&${query}`);
  const points = ((await got.json())[name] || {})[key] || [];
  if (points.length < 2) { caption.textContent = `${label(name)}: not enough history yet`; return; }
  const xs = points.map((p) => Date.parse(p[1])), ys = points.map((p) => p[0]);
  const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  const sx = (x) => 5 + 290 * (x - x0) / Math.max(1, x1 - x0);
  const sy = (y) => 100 - 90 * (y - y0) / Math.max(1e-9, y1 - y0);
  const path = points.map((p, i) => `${i ? 'L' : 'M'}${sx(xs[i]).toFixed(1)},${sy(ys[i]).toFixed(1)}`).join('');
  svg.innerHTML = `<path d="${path}" fill="none" stroke="#1e88e5" stroke-width="2"/>`;
  const round = (v) => Math.round(v * 10) / 10;
  caption.textContent = `${label(name)} ${unit(e[name])}, ${text}: ${round(y0)} to ${round(y1)}` +
    ` (${points.length} ${key === 'avg' ? 'averages' : 'readings'})`;
}

document.querySelectorAll('#spans button').forEach((b) => {
  b.onclick = () => {
    span = b.dataset.span;
    document.querySelectorAll('#spans button').forEach((o) => o.classList.toggle('on', o === b));
    if (selected) chart(entities.get(selected));
  };
});

document.getElementById('close').onclick = () => {
  document.getElementById('panel').hidden = true;
  selected = null;
};

// place names as HTML labels: text on the map itself would need glyph files, which we do not ship
const tags = [];
function labels() {
  for (const e of entities.values()) {
    if (e.type !== 'PointOfInterest' || !point(e)) continue;
    const tag = document.createElement('div');
    tag.className = 'label';
    tag.textContent = value(e, 'name') || e.id;
    new maplibregl.Marker({ element: tag, anchor: 'top', offset: [0, 8] })
      .setLngLat(point(e).coordinates).addTo(map);
    tags.push(tag);
  }
  map.on('moveend', declutter);
  declutter();
}

// a label that would cover one already shown waits until the map is zoomed in enough
function declutter() {
  const shown = [];
  for (const tag of tags) {
    tag.style.visibility = '';
    const box = tag.getBoundingClientRect();
    const hit = shown.some((b) => box.left < b.right && b.left < box.right && box.top < b.bottom && b.top < box.bottom);
    if (hit) tag.style.visibility = 'hidden'; else shown.push(box);
  }
}

map.on('load', async () => {
  for (const type of TYPES) await load(type);
  labels();
  follow();
  document.body.dataset.ready = 'true';
});
