/* tensorfleet dashboard: reads /events (server-sent events), draws uPlot charts and a step timeline. */
(function () {
  'use strict';

  var COLORS = {
    compute: '#4e79a7',
    encode: '#b07aa1',
    transfer: '#f28e2b',
    wait: '#c9c3bf',
    optimizer: '#59a14f',
    gather: '#e8eaee',
    late: '#d62728',
  };
  var TERMINAL = { completed: true, stopped: true, failed: true };
  var LANE_STEPS_SHOWN = 10;
  var RATE_WINDOW = 10;

  var state = emptyState();
  var charts = {};
  var pending = false;
  var ended = false;
  var api = { updates: 0, snapshots: 0, renders: 0, state: state, charts: charts, connected: false };
  window.tensorfleet = api;

  function emptyState() {
    return { info: null, startedAt: 0, status: 'starting', progress: null, steps: { step: [], t: [], loss: [], ips: [], samples: [], world: [] }, epochs: [], lanes: [], workers: [], events: [] };
  }

  function $(id) { return document.getElementById(id); }
  function natural(a, b) { return a.localeCompare(b, 'en', { numeric: true }); }

  function fmtSeconds(s) {
    if (s === null || s === undefined || !isFinite(s)) return '–';
    s = Math.max(0, s);
    var h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = Math.round(s % 60);
    if (h > 0) return h + 'h' + String(m).padStart(2, '0') + 'm';
    if (m > 0) return m + 'm' + String(r).padStart(2, '0') + 's';
    return r + 's';
  }
  function pct(x, digits) { return (x * 100).toFixed(digits === undefined ? 1 : digits) + '%'; }
  function num(x, digits) { return x === null || x === undefined || !isFinite(x) ? '–' : x.toFixed(digits); }

  // ---- incoming data --------------------------------------------------------

  function applySnapshot(p) {
    state = emptyState();
    api.state = state;
    state.info = p.info;
    state.startedAt = p.startedAt;
    merge(p);
    api.snapshots++;
  }

  function merge(p) {
    if (p.status) state.status = p.status;
    if ('progress' in p) state.progress = p.progress;
    if (p.steps) for (var k in state.steps) Array.prototype.push.apply(state.steps[k], p.steps[k] || []);
    if (p.epochs) Array.prototype.push.apply(state.epochs, p.epochs);
    if (p.lanes) {
      Array.prototype.push.apply(state.lanes, p.lanes);
      if (state.lanes.length > 40) state.lanes.splice(0, state.lanes.length - 40);
    }
    if (p.workers) state.workers = p.workers;
    if (p.events) {
      Array.prototype.push.apply(state.events, p.events);
      if (state.events.length > 300) state.events.splice(0, state.events.length - 300);
    }
  }

  function schedule() {
    if (pending) return;
    pending = true;
    requestAnimationFrame(function () {
      pending = false;
      render();
    });
  }

  function setConnection(text, cls) {
    var el = $('connection');
    el.textContent = text;
    el.className = 'pill ' + cls;
  }

  function connect() {
    var es = new EventSource('/events');
    es.addEventListener('open', function () {
      api.connected = true;
      setConnection('live', 'pill-live');
    });
    es.addEventListener('snapshot', function (ev) {
      applySnapshot(JSON.parse(ev.data));
      schedule();
    });
    es.addEventListener('update', function (ev) {
      merge(JSON.parse(ev.data));
      api.updates++;
      schedule();
    });
    es.addEventListener('end', function (ev) {
      var d = JSON.parse(ev.data);
      if (d.status) state.status = d.status;
      ended = true;
      es.close();
      api.connected = false;
      setConnection('run ended', 'pill-off');
      schedule();
    });
    es.addEventListener('error', function () {
      api.connected = false;
      if (ended || TERMINAL[state.status]) {
        es.close();
        setConnection('run ended', 'pill-off');
      } else {
        setConnection('reconnecting…', 'pill-off');
      }
    });
  }

  // ---- charts ---------------------------------------------------------------

  function chartWidth(el) { return Math.max(300, el.clientWidth); }

  function makeCharts() {
    var lossEl = $('chart-loss'), accEl = $('chart-accuracy'), thrEl = $('chart-throughput');
    var axis = { stroke: '#6b7384', grid: { stroke: '#eef0f3' }, ticks: { stroke: '#e2e5ea' } };
    charts.loss = new uPlot({
      width: chartWidth(lossEl), height: 260,
      scales: { x: { time: false } },
      legend: { live: false },
      series: [
        { label: 'steps done' },
        { label: 'loss', stroke: 'rgba(78,121,167,0.35)', width: 1 },
        { label: 'smoothed', stroke: '#1f4e79', width: 2 },
        { label: 'test loss', stroke: '#d62728', width: 0, paths: function () { return null; }, points: { show: true, size: 9, fill: '#d62728' } },
      ],
      axes: [Object.assign({ label: 'steps done' }, axis), Object.assign({ label: 'cross-entropy' }, axis)],
    }, [[], [], [], []], lossEl);

    charts.accuracy = new uPlot({
      width: chartWidth(accEl), height: 260,
      scales: {
        x: { time: false, range: function (u, min, max) { var e = (state.info && state.info.epochs) || 1; return [0.5, Math.max(e, max || 1) + 0.5]; } },
        y: { range: function (u, min, max) { if (min === null || max === null) return [0, 100]; return [Math.max(0, Math.floor(min - 2)), Math.min(100, Math.ceil(max + 1))]; } },
      },
      legend: { live: false },
      series: [
        { label: 'epoch' },
        { label: 'test accuracy %', stroke: '#2f7d32', width: 2, points: { show: true, size: 8, fill: '#2f7d32' } },
      ],
      axes: [Object.assign({ label: 'epoch', incrs: [1, 2, 5, 10, 20, 50, 100] }, axis), Object.assign({ label: '%' }, axis)],
    }, [[], []], accEl);

    charts.throughput = new uPlot({
      width: chartWidth(thrEl), height: 260,
      scales: { x: { time: false }, w: { range: function (u, min, max) { return [0, Math.max(1, max || 1) + 1]; } } },
      legend: { live: false },
      series: [
        { label: 'seconds' },
        { label: 'images/s (last 10 steps)', stroke: '#f28e2b', width: 1.5 },
        { label: 'images/s (average)', stroke: '#1f4e79', width: 2 },
        { label: 'workers', stroke: '#59a14f', width: 1.5, scale: 'w', paths: uPlot.paths.stepped({ align: 1 }) },
      ],
      axes: [
        Object.assign({ label: 'seconds since start' }, axis),
        Object.assign({ label: 'images/s' }, axis),
        Object.assign({ side: 1, scale: 'w', label: 'workers', grid: { show: false }, incrs: [1, 2, 5, 10] }, axis),
      ],
    }, [[], [], [], []], thrEl);

    window.addEventListener('resize', function () {
      charts.loss.setSize({ width: chartWidth(lossEl), height: 260 });
      charts.accuracy.setSize({ width: chartWidth(accEl), height: 260 });
      charts.throughput.setSize({ width: chartWidth(thrEl), height: 260 });
      drawLanes();
    });
  }

  function updateCharts() {
    var s = state.steps, n = s.step.length;
    var smooth = new Array(n), testLoss = new Array(n).fill(null), recent = new Array(n);
    var ema = NaN, prefix = new Array(n + 1);
    prefix[0] = 0;
    for (var i = 0; i < n; i++) {
      ema = isNaN(ema) ? s.loss[i] : 0.9 * ema + 0.1 * s.loss[i];
      smooth[i] = ema;
      prefix[i + 1] = prefix[i] + s.samples[i];
    }
    for (i = 0; i < n; i++) {
      var j = Math.max(0, i - RATE_WINDOW);
      var dt = s.t[i] - s.t[j];
      recent[i] = i > j && dt > 0 ? (prefix[i + 1] - prefix[j + 1]) / dt : null;
    }
    var index = new Map();
    for (i = 0; i < n; i++) index.set(s.step[i], i);
    state.epochs.forEach(function (e) {
      var at = index.get(e.step);
      if (at !== undefined) testLoss[at] = e.testLoss;
    });
    charts.loss.setData([s.step.slice(), s.loss.slice(), smooth, testLoss]);
    charts.accuracy.setData([state.epochs.map(function (e) { return e.epoch + 1; }), state.epochs.map(function (e) { return e.testAccuracy * 100; })]);
    charts.throughput.setData([s.t.slice(), recent, s.ips.slice(), s.world.slice()]);
  }

  // ---- step timeline --------------------------------------------------------

  function laneRows() {
    var ids = [];
    state.workers.forEach(function (w) { if (ids.indexOf(w.id) < 0) ids.push(w.id); });
    state.lanes.forEach(function (l) { l.workers.forEach(function (w) { if (ids.indexOf(w.id) < 0) ids.push(w.id); }); });
    return ids.sort(natural);
  }

  function drawLanes() {
    var canvas = $('lanes');
    var dpr = window.devicePixelRatio || 1;
    var width = canvas.clientWidth, height = canvas.clientHeight;
    canvas.width = Math.round(width * dpr);
    canvas.height = Math.round(height * dpr);
    var ctx = canvas.getContext('2d');
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, width, height);
    ctx.font = '12px system-ui, sans-serif';
    var lanes = state.lanes.slice(-LANE_STEPS_SHOWN);
    var ids = laneRows();
    var rows = ['parameter server'].concat(ids.map(function (id) { return 'worker ' + id; }));
    var left = 120, axisH = 22, top = 4;
    var rowH = Math.min(56, (height - axisH - top) / Math.max(1, rows.length));
    ctx.fillStyle = '#6b7384';
    ctx.textBaseline = 'middle';
    rows.forEach(function (name, r) { ctx.fillText(name.length > 17 ? name.slice(0, 16) + '…' : name, 4, top + r * rowH + rowH / 2); });
    if (lanes.length === 0) {
      ctx.fillText('waiting for the first step…', left + 10, top + rowH / 2);
      return;
    }
    var t0 = lanes[0].dispatched, t1 = lanes[lanes.length - 1].committed;
    var span = Math.max(1, t1 - t0), plotW = width - left - 8;
    function x(t) { return left + ((t - t0) / span) * plotW; }
    function rect(row, from, to, color) {
      if (!(to > from)) return;
      ctx.fillStyle = color;
      var x0 = x(from), w = Math.max(0.75, x(to) - x0);
      ctx.fillRect(x0, top + row * rowH + 3, w, rowH - 6);
    }
    lanes.forEach(function (l) {
      rect(0, l.dispatched, l.optimizer, COLORS.gather);
      rect(0, l.optimizer, l.committed, COLORS.optimizer);
      var labelW = x(l.optimizer) - x(l.dispatched);
      if (labelW > 44) {
        ctx.fillStyle = '#6b7384';
        ctx.textBaseline = 'middle';
        ctx.fillText('step ' + l.step, x(l.dispatched) + 4, top + rowH / 2);
      }
      l.workers.forEach(function (w, k) {
        var row = ids.indexOf(w.id) + 1;
        var rt = Math.max(0, w.delivered - l.dispatched);
        var compute = Math.min(w.compute, rt), encode = Math.min(w.encode, rt - compute);
        var half = (rt - compute - encode) / 2, c0 = l.dispatched + half;
        rect(row, l.dispatched, c0, COLORS.transfer);
        rect(row, c0, c0 + compute, COLORS.compute);
        rect(row, c0 + compute, c0 + compute + encode, COLORS.encode);
        rect(row, c0 + compute + encode, w.delivered, COLORS.transfer);
        rect(row, w.delivered, w.delivered + w.wait, COLORS.wait);
        rect(row, l.optimizer, l.committed, COLORS.optimizer);
        if (k === l.slowest) {
          ctx.fillStyle = COLORS.late;
          ctx.fillRect(x(w.delivered) - 1, top + row * rowH + 1, 2, rowH - 2);
        }
      });
    });
    // time axis: seconds since the run started
    var axisY = top + rows.length * rowH + 2;
    ctx.strokeStyle = '#e2e5ea';
    ctx.beginPath();
    ctx.moveTo(left, axisY);
    ctx.lineTo(left + plotW, axisY);
    ctx.stroke();
    ctx.fillStyle = '#6b7384';
    ctx.textBaseline = 'top';
    for (var i = 0; i <= 4; i++) {
      var t = t0 + (span * i) / 4;
      var label = (t / 1000).toFixed(span < 2000 ? 2 : 1) + ' s';
      var tx = left + (plotW * i) / 4;
      ctx.textAlign = i === 0 ? 'left' : i === 4 ? 'right' : 'center';
      ctx.fillText(label, tx, axisY + 4);
    }
    ctx.textAlign = 'left';
  }

  // ---- cards, table, events ---------------------------------------------------

  function renderCards() {
    var p = state.progress, info = state.info;
    if (info) $('run-info').textContent = info.model + ' · backend ' + info.backend + ' · batch ' + info.batchSize + '/worker · ' + info.trainSamples + ' training / ' + info.testSamples + ' test samples';
    var st = $('status');
    st.textContent = state.status;
    st.className = 'pill pill-' + state.status;
    var epochs = (info && info.epochs) || (p && p.epochs) || 1;
    if (p) {
      $('stat-epoch').textContent = Math.min(p.epoch + 1, epochs) + ' / ' + epochs;
      $('stat-epoch-bar').style.width = (Math.min(1, p.fraction) * 100).toFixed(1) + '%';
      $('stat-step').textContent = p.stepInEpoch + ' / ' + p.stepsInEpoch;
      $('stat-step-total').textContent = p.step + ' steps in all';
      $('stat-ips').textContent = num(p.imagesPerSecond, 0);
      $('stat-ips-sub').textContent = 'run average';
      $('stat-eta').textContent = TERMINAL[state.status] ? 'done' : fmtSeconds(p.etaSeconds);
      $('stat-elapsed').textContent = fmtSeconds(p.elapsedSeconds) + ' elapsed';
    }
    var n = state.steps.loss.length;
    if (n > 0) {
      var ema = NaN;
      for (var i = Math.max(0, n - 50); i < n; i++) ema = isNaN(ema) ? state.steps.loss[i] : 0.9 * ema + 0.1 * state.steps.loss[i];
      $('stat-loss').textContent = num(ema, 4);
    }
    var last = state.epochs[state.epochs.length - 1];
    if (last) {
      $('stat-accuracy').textContent = pct(last.testAccuracy, 2);
      $('stat-accuracy-sub').textContent = 'epoch ' + (last.epoch + 1) + ', test loss ' + last.testLoss.toFixed(4);
    }
    var alive = state.workers.filter(function (w) { return w.alive; }).length;
    $('stat-workers').textContent = String(alive);
    $('stat-workers-sub').textContent = info ? 'of ' + info.workers + ' requested' : '';
  }

  function renderWorkers() {
    var body = $('workers').tBodies[0];
    var worst = null;
    state.workers.forEach(function (w) { if (w.waitCaused > 0 && (!worst || w.waitCaused > worst.waitCaused)) worst = w; });
    var html = state.workers.slice().sort(function (a, b) { return natural(a.id, b.id); }).map(function (w) {
      var t = w.total || 0;
      function share(x) { return t > 0 ? pct(x / t) : '–'; }
      function seg(x, color) { return t > 0 ? '<span style="width:' + ((100 * x) / t).toFixed(2) + '%;background:' + color + '"></span>' : ''; }
      return '<tr class="' + (w === worst && state.workers.length > 1 ? 'straggler' : '') + '">' +
        '<td class="' + (w.alive ? '' : 'gone') + '">' + escapeHtml(w.id) + '</td>' +
        '<td>' + w.steps + '</td><td>' + w.samples + '</td>' +
        '<td>' + (t > 0 ? ((w.samples * 1000) / t).toFixed(1) : '–') + '</td>' +
        '<td>' + share(w.compute) + '</td><td>' + share(w.encode + w.transfer) + '</td><td>' + share(w.wait) + '</td><td>' + share(w.optimizer) + '</td>' +
        '<td class="split"><div class="stack">' + seg(w.compute, COLORS.compute) + seg(w.encode, COLORS.encode) + seg(w.transfer, COLORS.transfer) + seg(w.wait, COLORS.wait) + seg(w.optimizer, COLORS.optimizer) + '</div></td>' +
        '<td>' + (w.steps > 0 ? w.stragglerSteps + ' (' + Math.round((100 * w.stragglerSteps) / w.steps) + '%)' : '–') + '</td>' +
        '<td>' + (w.waitCaused / 1000).toFixed(2) + ' s</td></tr>';
    }).join('');
    body.innerHTML = html || '<tr><td colspan="11" class="muted">no worker yet</td></tr>';
  }

  function renderEvents() {
    var list = $('events');
    list.innerHTML = state.events.slice().reverse().map(function (e) {
      return '<li class="' + e.kind + '"><span class="t">+' + e.t.toFixed(1) + ' s</span><span class="k">' + e.kind + '</span><span>' + escapeHtml(e.text) + '</span></li>';
    }).join('');
  }

  function escapeHtml(s) {
    return String(s).replace(/[&<>"']/g, function (c) { return { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]; });
  }

  function render() {
    renderCards();
    updateCharts();
    drawLanes();
    renderWorkers();
    renderEvents();
    api.renders++;
  }

  makeCharts();
  render();
  connect();
})();
