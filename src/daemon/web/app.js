// The introspect page: polls the JSON API of the vrouter it is served by and
// renders it. No framework, no build step; everything is text content (never
// innerHTML), so names coming from pods cannot inject markup.
'use strict';

const POLL_MS = 1000;
const FLOW_POLL_MS = 2000;
const ROUTE_POLL_MS = 5000;
const CHART_POINTS = 60;
const FLOW_PAGE = 50;
const COLORS = ['#1f6feb', '#d9480f', '#2f9e44', '#ae3ec9', '#f08c00', '#0c8599', '#e03131', '#5c940d'];

const state = {
  vrf: null,
  flowOffset: 0,
  flowTotal: 0,
  /** VN name -> array of {t, inPps, outPps} */
  history: new Map(),
  samples: 0,
};

function $(selector) {
  return document.querySelector(selector);
}

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function row(cells, className) {
  const tr = el('tr', null, className);
  for (const cell of cells) {
    if (cell instanceof Node) {
      const td = el('td');
      td.appendChild(cell);
      tr.appendChild(td);
    } else if (cell && typeof cell === 'object') {
      const td = el('td', cell.text, cell.className);
      if (cell.node) td.appendChild(cell.node);
      tr.appendChild(td);
    } else {
      tr.appendChild(el('td', cell));
    }
  }
  return tr;
}

function fill(tbody, rows, columns, emptyText) {
  tbody.replaceChildren(...(rows.length ? rows : [emptyRow(columns, emptyText)]));
}

function emptyRow(columns, text) {
  const tr = el('tr');
  const td = el('td', text, 'empty');
  td.colSpan = columns;
  tr.appendChild(td);
  return tr;
}

function num(value) {
  return { text: Number(value).toLocaleString('en-US'), className: 'num' };
}

function rate(value) {
  if (value === null || value === undefined) return { text: '–', className: 'num' };
  return { text: human(value), className: 'num' };
}

function human(value) {
  if (value >= 1e9) return (value / 1e9).toFixed(2) + 'G';
  if (value >= 1e6) return (value / 1e6).toFixed(2) + 'M';
  if (value >= 1e3) return (value / 1e3).toFixed(1) + 'k';
  return value >= 10 || value === 0 ? value.toFixed(0) : value.toFixed(1);
}

function duration(seconds) {
  const d = Math.floor(seconds / 86400);
  const h = Math.floor((seconds % 86400) / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = seconds % 60;
  return (d ? d + 'd ' : '') + (d || h ? h + 'h ' : '') + (d || h || m ? m + 'm ' : '') + s + 's';
}

async function api(path) {
  const response = await fetch(path, { cache: 'no-store' });
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

function setStatus(text, error) {
  const status = $('#status');
  status.textContent = text;
  status.classList.toggle('error', Boolean(error));
}

// --- renderers -----------------------------------------------------------------

function renderSummary(summary) {
  $('#node-name').textContent = summary.node;
  document.title = 'vrouter ' + summary.node;
  const chips = [
    ['underlay', summary.underlayIp],
    ['up', duration(summary.uptimeSeconds)],
    ['pods', summary.ports],
    ['flows', summary.flows.toLocaleString('en-US')],
    ['rx', summary.received.toLocaleString('en-US')],
    ['tx', summary.transmitted.toLocaleString('en-US')],
    ['dropped', summary.dropped.toLocaleString('en-US')],
    ['control', summary.controlSessionsUp + '/' + summary.controlSessions + ' up'],
  ];
  $('#summary').replaceChildren(
    ...chips.map(([name, value]) => {
      const div = el('div');
      div.append(el('dt', name), el('dd', value));
      return div;
    }),
  );
}

function podName(pod) {
  if (!pod) return '';
  return (pod.namespace ? pod.namespace + '/' : '') + (pod.name || pod.id);
}

function renderVifs(vifs) {
  const rows = vifs.map((vif) => {
    const tr = row([
      vif.id,
      vif.name,
      vif.kind,
      podName(vif.pod),
      vif.ip || '',
      vif.vrfName || '',
      num(vif.rxPackets),
      num(vif.txPackets),
      rate(vif.rates && vif.rates.rxPps),
      rate(vif.rates && vif.rates.txPps),
      rate(vif.rates && vif.rates.rxBitsPerSecond),
      rate(vif.rates && vif.rates.txBitsPerSecond),
    ]);
    tr.dataset.vif = vif.id;
    if (vif.pod) tr.dataset.pod = vif.pod.name || vif.pod.id;
    return tr;
  });
  fill($('#vifs tbody'), rows, 12, 'no interfaces');
}

function renderVnTraffic(vns) {
  const rows = vns.map((vn) => {
    const tr = row([
      vn.vn,
      num(vn.packetsIn),
      num(vn.bytesIn),
      num(vn.packetsOut),
      num(vn.bytesOut),
      num(vn.flows),
      num(vn.drops),
      rate(vn.rates && vn.rates.inPps),
      rate(vn.rates && vn.rates.outPps),
    ]);
    tr.dataset.vn = vn.vn;
    return tr;
  });
  fill($('#vn-traffic tbody'), rows, 9, 'no virtual networks');
  if (vns.every((vn) => vn.rates === null)) return;
  const now = Date.now();
  for (const vn of vns) {
    let points = state.history.get(vn.vn);
    if (!points) state.history.set(vn.vn, (points = []));
    points.push({ t: now, inPps: vn.rates ? vn.rates.inPps : 0, outPps: vn.rates ? vn.rates.outPps : 0 });
    if (points.length > CHART_POINTS) points.shift();
  }
  state.samples++;
  drawChart();
}

/** Packets per second (in + out) per VN over the last CHART_POINTS samples. */
function drawChart() {
  const canvas = $('#vn-chart');
  const ctx = canvas.getContext('2d');
  const width = canvas.width;
  const height = canvas.height;
  const left = 52;
  const right = 10;
  const top = 12;
  const bottom = 24;
  ctx.clearRect(0, 0, width, height);
  const series = [...state.history.entries()];
  let max = 1;
  for (const [, points] of series) for (const point of points) max = Math.max(max, point.inPps + point.outPps);
  const scale = niceCeiling(max);
  ctx.font = '11px "Liberation Sans", Arial, sans-serif';
  ctx.fillStyle = '#6b7785';
  ctx.strokeStyle = '#e2e7ee';
  ctx.lineWidth = 1;
  for (let i = 0; i <= 4; i++) {
    const y = top + ((height - top - bottom) * i) / 4;
    ctx.beginPath();
    ctx.moveTo(left, y + 0.5);
    ctx.lineTo(width - right, y + 0.5);
    ctx.stroke();
    ctx.textAlign = 'right';
    ctx.textBaseline = 'middle';
    ctx.fillText(human((scale * (4 - i)) / 4), left - 6, y);
  }
  ctx.textAlign = 'left';
  ctx.textBaseline = 'alphabetic';
  ctx.fillText('pps (in + out), last ' + CHART_POINTS + ' s', left, height - 6);
  const x = (index) => left + ((width - left - right) * index) / (CHART_POINTS - 1);
  const y = (value) => top + (height - top - bottom) * (1 - value / scale);
  const legend = [];
  series.forEach(([name, points], seriesIndex) => {
    const color = COLORS[seriesIndex % COLORS.length];
    const offset = CHART_POINTS - points.length;
    ctx.strokeStyle = color;
    ctx.lineWidth = 2;
    ctx.beginPath();
    points.forEach((point, i) => {
      const px = x(offset + i);
      const py = y(point.inPps + point.outPps);
      if (i === 0) ctx.moveTo(px, py);
      else ctx.lineTo(px, py);
    });
    ctx.stroke();
    const last = points[points.length - 1];
    const item = el('span');
    const swatch = el('span', null, 'swatch');
    swatch.style.background = color;
    item.append(swatch, document.createTextNode(name + ' ' + human(last ? last.inPps + last.outPps : 0) + ' pps'));
    legend.push(item);
  });
  $('#vn-legend').replaceChildren(...legend);
  canvas.dataset.samples = String(state.samples);
  canvas.dataset.last = JSON.stringify(Object.fromEntries(series.map(([name, points]) => [name, points.length ? points[points.length - 1].inPps + points[points.length - 1].outPps : 0])));
}

function niceCeiling(value) {
  const power = Math.pow(10, Math.floor(Math.log10(value)));
  for (const step of [1, 2, 2.5, 5, 10]) if (value <= step * power) return step * power;
  return 10 * power;
}

function renderVrfs(vrfs) {
  const select = $('#route-vrf');
  if (state.vrf === null && vrfs.length) state.vrf = vrfs[0].name;
  const rows = vrfs.map((vrf) => {
    const tr = row([vrf.id, vrf.name, vrf.subnets.join(', '), vrf.gateway || '', num(vrf.routes)], 'clickable' + (vrf.name === state.vrf ? ' selected' : ''));
    tr.dataset.vrf = vrf.name;
    tr.addEventListener('click', () => {
      state.vrf = vrf.name;
      select.value = vrf.name;
      refreshRoutes();
      for (const other of document.querySelectorAll('#vrfs tbody tr')) other.classList.toggle('selected', other.dataset.vrf === vrf.name);
    });
    return tr;
  });
  fill($('#vrfs tbody'), rows, 5, 'no VRFs');
  const names = vrfs.map((vrf) => vrf.name);
  const current = [...select.options].map((option) => option.value);
  if (names.join('\n') !== current.join('\n')) {
    select.replaceChildren(...names.map((name) => el('option', name)));
  }
  if (state.vrf !== null) select.value = state.vrf;
}

function renderRoutes(answer) {
  const rows = answer.routes.map((route) => {
    let via = '';
    if (route.kind === 'encap') via = 'vif ' + route.vif + (route.mac ? ' (' + route.mac + ')' : '');
    else if (route.kind === 'tunnel') via = route.dip + ' ' + (route.encap || '').toUpperCase();
    else if (route.kind === 'composite') via = 'ECMP: ' + (route.members || []).map((member) => (member.dip ? member.dip + ':' + member.label : member.vif !== null ? 'vif ' + member.vif : '-')).join(', ');
    const tr = row([route.prefix, route.nexthop, route.kind || '', route.label === null ? '-' : route.label, via]);
    tr.dataset.prefix = route.prefix;
    return tr;
  });
  fill($('#routes tbody'), rows, 5, 'no routes');
}

function renderControlSessions(sessions) {
  const rows = sessions.map((session) => {
    const up = /^(up|established|ready)$/i.test(session.state || '');
    return row([
      session.peer || '',
      { node: el('span', session.state || 'unknown', 'pill ' + (up ? 'up' : 'down')) },
      num(session.routesReceived || 0),
      num(session.routesSent || 0),
      session.lastError || '',
    ]);
  });
  fill($('#control-sessions tbody'), rows, 5, 'no control sessions (routes are set through the local API)');
}

function renderDrops(drops) {
  const rows = Object.entries(drops.reasons)
    .filter(([, count]) => count > 0)
    .sort((a, b) => b[1] - a[1])
    .map(([reason, count]) => row([reason, num(count)]));
  fill($('#drops tbody'), rows, 2, 'no drops');
}

function renderFlows(answer) {
  state.flowTotal = answer.total;
  const rows = answer.flows.map((flow) => {
    const action = flow.action === 'nat' ? 'nat (' + flow.nat.join(',') + ')' : flow.action;
    const ports = flow.protocol === 'icmp' ? '' : ':';
    const tr = row([
      flow.index + '<=>' + flow.reverseIndex,
      flow.vrfName || flow.vrf,
      flow.protocol,
      flow.src + (ports ? ports + flow.srcPort : ' id ' + flow.srcPort),
      flow.dst + (ports ? ports + flow.dstPort : ''),
      { node: el('span', action, 'pill ' + (flow.action === 'drop' ? 'drop' : flow.action === 'nat' ? 'nat' : '')) },
      flow.nexthop >= 0 ? flow.nexthop : '-',
      flow.ecmpSlot >= 0 ? flow.ecmpSlot : '-',
      num(flow.packets),
      num(flow.bytes),
    ]);
    tr.dataset.flow = flow.index;
    tr.dataset.src = flow.src;
    tr.dataset.dst = flow.dst;
    tr.dataset.protocol = flow.protocol;
    return tr;
  });
  fill($('#flows tbody'), rows, 10, 'no flows');
  $('#flow-count').textContent = answer.total + ' entries';
  const last = Math.min(answer.offset + answer.flows.length, answer.total);
  $('#flow-page').textContent = answer.total ? answer.offset + 1 + '–' + last + ' of ' + answer.total : '';
}

// --- polling -------------------------------------------------------------------

async function refreshFast() {
  try {
    const [summary, vifs, vns, sessions, drops] = await Promise.all([api('/api/summary'), api('/api/vifs'), api('/api/vn-traffic'), api('/api/control-sessions'), api('/api/drops')]);
    renderSummary(summary);
    renderVifs(vifs);
    renderVnTraffic(vns);
    renderControlSessions(sessions);
    renderDrops(drops);
    setStatus('updated ' + new Date().toLocaleTimeString('en-GB'));
  } catch (error) {
    setStatus('cannot reach the vrouter: ' + error.message, true);
  }
}

async function refreshRoutes() {
  try {
    const vrfs = await api('/api/vrfs');
    renderVrfs(vrfs);
    if (state.vrf === null) return;
    const params = new URLSearchParams({ vrf: state.vrf });
    const prefix = $('#route-prefix').value.trim();
    if (prefix) params.set('prefix', prefix);
    renderRoutes(await api('/api/routes?' + params));
  } catch (error) {
    fill($('#routes tbody'), [], 5, error.message);
  }
}

async function refreshFlows() {
  const form = new FormData($('#flow-filter'));
  const params = new URLSearchParams({ offset: String(state.flowOffset), limit: String(FLOW_PAGE) });
  for (const [key, value] of form) if (String(value).trim()) params.set(key, String(value).trim());
  try {
    renderFlows(await api('/api/flows?' + params));
  } catch (error) {
    fill($('#flows tbody'), [], 10, error.message);
  }
}

function start() {
  $('#route-vrf').addEventListener('change', (event) => {
    state.vrf = event.target.value;
    refreshRoutes();
  });
  $('#route-filter').addEventListener('submit', (event) => {
    event.preventDefault();
    refreshRoutes();
  });
  $('#route-prefix').addEventListener('change', refreshRoutes);
  $('#flow-filter').addEventListener('submit', (event) => {
    event.preventDefault();
    state.flowOffset = 0;
    refreshFlows();
  });
  $('#flow-filter').addEventListener('change', () => {
    state.flowOffset = 0;
    refreshFlows();
  });
  $('#flow-prev').addEventListener('click', () => {
    state.flowOffset = Math.max(0, state.flowOffset - FLOW_PAGE);
    refreshFlows();
  });
  $('#flow-next').addEventListener('click', () => {
    if (state.flowOffset + FLOW_PAGE < state.flowTotal) state.flowOffset += FLOW_PAGE;
    refreshFlows();
  });
  drawChart();
  refreshFast();
  refreshRoutes();
  refreshFlows();
  setInterval(refreshFast, POLL_MS);
  setInterval(refreshFlows, FLOW_POLL_MS);
  setInterval(refreshRoutes, ROUTE_POLL_MS);
}

start();
