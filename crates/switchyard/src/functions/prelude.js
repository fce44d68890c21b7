// The globals a Segment source function expects (docs/functions.md#globals),
// evaluated once per context before the function's own code. Host services arrive on
// `__host` (base64, UUIDs, fetch, timers) and are hidden again before user code runs.
(function (g) {
  'use strict';
  const host = g.__host;
  delete g.__host;
  // Taken now: the function may replace the globals, and what __poll hands the host must not
  // go through its versions (the host checks the limits again all the same).
  const stringify = JSON.stringify;
  const assign = Object.assign;

  // ---- error classes (docs/functions.md#outcomes) --------------------------------------
  function errorClass(name) {
    const C = class extends Error {
      constructor(message) {
        super(message);
        this.name = name;
      }
    };
    Object.defineProperty(C, 'name', { value: name });
    return C;
  }
  for (const name of ['ValidationError', 'InvalidEventPayload', 'EventNotSupported', 'RetryError', 'DropEvent']) {
    g[name] = errorClass(name);
  }

  // ---- console: bounded capture -------------------------------------------------------
  const MAX_LINES = 100;
  const MAX_LOG_BYTES = 16384;
  let logs = [];
  let logBytes = 0;
  function show(v) {
    if (typeof v === 'string') return v;
    if (v instanceof Error) return v.stack ? String(v) + '\n' + v.stack : String(v);
    try {
      const s = JSON.stringify(v);
      return s === undefined ? String(v) : s;
    } catch (e) {
      return String(v);
    }
  }
  function capture(level) {
    return function () {
      if (logs.length > MAX_LINES || logBytes > MAX_LOG_BYTES) return;
      let line = Array.prototype.map.call(arguments, show).join(' ');
      if (logs.length === MAX_LINES || logBytes + line.length > MAX_LOG_BYTES) {
        line = '[switchyard] further console output of this run was dropped (limit ' + MAX_LINES + ' lines, ' + MAX_LOG_BYTES + ' bytes)';
        logBytes = MAX_LOG_BYTES + 1;
        logs.push({ level: 'warn', message: line });
        return;
      }
      logBytes += line.length;
      logs.push({ level: level, message: line });
    };
  }
  g.console = {
    log: capture('log'), info: capture('info'), debug: capture('debug'),
    warn: capture('warn'), error: capture('error'),
  };

  // ---- base64 and crypto -----------------------------------------------------------------
  g.btoa = function btoa(s) { return host.btoa(String(s)); };
  g.atob = function atob(s) { return host.atob(String(s)); };
  g.crypto = { randomUUID: function randomUUID() { return host.uuid(); } };

  // ---- URLSearchParams, URL, Headers ------------------------------------------------------
  function decodeForm(s) {
    const t = s.replace(/\+/g, ' ');
    try { return decodeURIComponent(t); } catch (e) { return t; }
  }
  function encodeForm(s) {
    return encodeURIComponent(s).replace(/%20/g, '+').replace(/[!'()~]/g,
      (c) => '%' + c.charCodeAt(0).toString(16).toUpperCase());
  }
  class URLSearchParams {
    constructor(init) {
      this._list = [];
      this._url = null;
      if (init === undefined || init === null) return;
      if (typeof init === 'object' && typeof init[Symbol.iterator] === 'function') {
        for (const pair of init) this._list.push([String(pair[0]), String(pair[1])]);
      } else if (typeof init === 'object') {
        for (const k of Object.keys(init)) this._list.push([k, String(init[k])]);
      } else {
        this._parse(String(init));
      }
    }
    _parse(s) {
      this._list = [];
      if (s.startsWith('?')) s = s.slice(1);
      for (const part of s.split('&')) {
        if (part === '') continue;
        const i = part.indexOf('=');
        const k = i < 0 ? part : part.slice(0, i);
        const v = i < 0 ? '' : part.slice(i + 1);
        this._list.push([decodeForm(k), decodeForm(v)]);
      }
    }
    _changed() { if (this._url) this._url._search = this._list.length ? '?' + this.toString() : ''; }
    get size() { return this._list.length; }
    append(k, v) { this._list.push([String(k), String(v)]); this._changed(); }
    delete(k) { k = String(k); this._list = this._list.filter((p) => p[0] !== k); this._changed(); }
    get(k) { k = String(k); const p = this._list.find((q) => q[0] === k); return p ? p[1] : null; }
    getAll(k) { k = String(k); return this._list.filter((p) => p[0] === k).map((p) => p[1]); }
    has(k) { k = String(k); return this._list.some((p) => p[0] === k); }
    set(k, v) {
      k = String(k); v = String(v);
      const i = this._list.findIndex((p) => p[0] === k);
      if (i < 0) { this._list.push([k, v]); } else {
        this._list[i][1] = v;
        this._list = this._list.filter((p, j) => j <= i || p[0] !== k);
      }
      this._changed();
    }
    sort() { this._list.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0)); this._changed(); }
    forEach(fn, self) { for (const p of this._list) fn.call(self, p[1], p[0], this); }
    keys() { return this._list.map((p) => p[0])[Symbol.iterator](); }
    values() { return this._list.map((p) => p[1])[Symbol.iterator](); }
    entries() { return this._list.map((p) => [p[0], p[1]])[Symbol.iterator](); }
    [Symbol.iterator]() { return this.entries(); }
    toString() { return this._list.map((p) => encodeForm(p[0]) + '=' + encodeForm(p[1])).join('&'); }
  }
  g.URLSearchParams = URLSearchParams;

  const URL_RE = /^([a-zA-Z][a-zA-Z0-9+.-]*:)(?:\/\/(?:([^@\/?#]*)@)?(\[[^\]\/?#]*\]|[^:\/?#]*)(?::(\d*))?)?([^?#]*)(\?[^#]*)?(#.*)?$/;
  const DEFAULT_PORTS = { 'http:': '80', 'https:': '443', 'ws:': '80', 'wss:': '443' };
  class URL {
    constructor(url, base) {
      let s = String(url).trim();
      if (!/^[a-zA-Z][a-zA-Z0-9+.-]*:/.test(s)) {
        if (base === undefined) throw new TypeError('Invalid URL: ' + s);
        const b = base instanceof URL ? base : new URL(base);
        if (s.startsWith('//')) s = b.protocol + s;
        else if (s.startsWith('/')) s = b.origin + s;
        else if (s.startsWith('?')) s = b.origin + b.pathname + s;
        else if (s.startsWith('#')) s = b.origin + b.pathname + b.search + s;
        else s = b.origin + b.pathname.replace(/[^/]*$/, '') + s;
      }
      const m = URL_RE.exec(s);
      if (!m || (m[3] === undefined && DEFAULT_PORTS[m[1].toLowerCase()])) throw new TypeError('Invalid URL: ' + s);
      this.protocol = m[1].toLowerCase();
      const auth = m[2] || '';
      const colon = auth.indexOf(':');
      this.username = colon < 0 ? auth : auth.slice(0, colon);
      this.password = colon < 0 ? '' : auth.slice(colon + 1);
      this.hostname = (m[3] || '').toLowerCase();
      const port = m[4] || '';
      this.port = DEFAULT_PORTS[this.protocol] === port ? '' : port;
      this.pathname = m[5] || (DEFAULT_PORTS[this.protocol] ? '/' : '');
      this._search = m[6] && m[6] !== '?' ? m[6] : '';
      this.hash = m[7] && m[7] !== '#' ? m[7] : '';
      this._params = null;
    }
    get host() { return this.port ? this.hostname + ':' + this.port : this.hostname; }
    get origin() { return this.protocol + '//' + this.host; }
    get search() { return this._search; }
    set search(v) { v = String(v); this._search = v === '' || v === '?' ? '' : (v[0] === '?' ? v : '?' + v); if (this._params) this._params._parse(this._search); }
    get searchParams() {
      if (!this._params) { this._params = new URLSearchParams(this._search); this._params._url = this; }
      return this._params;
    }
    get href() {
      const auth = this.username ? this.username + (this.password ? ':' + this.password : '') + '@' : '';
      return this.protocol + '//' + auth + this.host + this.pathname + this._search + this.hash;
    }
    toString() { return this.href; }
    toJSON() { return this.href; }
  }
  g.URL = URL;

  class Headers {
    constructor(init) {
      this._map = new Map();
      if (init === undefined || init === null) return;
      if (init instanceof Headers) { init.forEach((v, k) => this.append(k, v)); return; }
      if (typeof init[Symbol.iterator] === 'function') { for (const p of init) this.append(p[0], p[1]); return; }
      for (const k of Object.keys(init)) this.append(k, init[k]);
    }
    append(k, v) {
      k = String(k).toLowerCase(); v = String(v);
      const old = this._map.get(k);
      this._map.set(k, old === undefined ? v : old + ', ' + v);
    }
    set(k, v) { this._map.set(String(k).toLowerCase(), String(v)); }
    get(k) { const v = this._map.get(String(k).toLowerCase()); return v === undefined ? null : v; }
    has(k) { return this._map.has(String(k).toLowerCase()); }
    delete(k) { this._map.delete(String(k).toLowerCase()); }
    forEach(fn, self) { for (const [k, v] of this.entries()) fn.call(self, v, k, this); }
    entries() { return [...this._map.entries()].sort((a, b) => (a[0] < b[0] ? -1 : 1))[Symbol.iterator](); }
    keys() { return [...this.entries()].map((p) => p[0])[Symbol.iterator](); }
    values() { return [...this.entries()].map((p) => p[1])[Symbol.iterator](); }
    [Symbol.iterator]() { return this.entries(); }
  }
  g.Headers = Headers;

  // ---- fetch (async; the host enforces the SSRF guard and the deadline) -------------------
  class Response {
    constructor(body, init) {
      init = init || {};
      this._body = body === undefined || body === null ? '' : String(body);
      this.status = init.status === undefined ? 200 : init.status;
      this.statusText = init.statusText || '';
      this.headers = new Headers(init.headers);
      this.url = init.url || '';
      this.ok = this.status >= 200 && this.status < 300;
      this.redirected = false;
    }
    text() { return Promise.resolve(this._body); }
    json() { return Promise.resolve(this._body).then((b) => JSON.parse(b)); }
  }
  g.Response = Response;
  const pending = new Map();
  g.fetch = function fetch(input, init) {
    init = init || {};
    return new Promise((resolve, reject) => {
      const url = input instanceof URL ? input.href : String(input && input.url ? input.url : input);
      const method = String(init.method || 'GET').toUpperCase();
      const headers = new Headers(init.headers);
      let body = init.body;
      if (body instanceof URLSearchParams) {
        if (!headers.has('content-type')) headers.set('content-type', 'application/x-www-form-urlencoded;charset=UTF-8');
        body = body.toString();
      } else if (body !== undefined && body !== null && typeof body !== 'string') {
        body = String(body);
      }
      const id = host.fetch(url, method, JSON.stringify([...headers]), body === undefined ? null : body);
      pending.set(id, { resolve, reject, url });
    });
  };
  Object.defineProperty(g, '__fetchDone', {
    value: function (id, status, headersJson, body, error) {
      const p = pending.get(id);
      if (!p) return;
      pending.delete(id);
      if (error !== null && error !== undefined) p.reject(new TypeError('fetch failed: ' + error));
      else p.resolve(new Response(body, { status: status, headers: JSON.parse(headersJson), url: p.url }));
    },
  });

  // ---- timers (the host fires them while the run waits, inside its deadline) ------------
  const timers = new Map();
  g.setTimeout = function setTimeout(fn, ms) {
    const args = Array.prototype.slice.call(arguments, 2);
    const id = host.timer(Number(ms) || 0);
    timers.set(id, () => (typeof fn === 'function' ? fn.apply(undefined, args) : undefined));
    return id;
  };
  g.clearTimeout = function clearTimeout(id) { timers.delete(id); };
  Object.defineProperty(g, '__timerDone', {
    value: function (id) {
      const f = timers.get(id);
      if (f) { timers.delete(id); f(); }
    },
  });

  // ---- Segment.* (emulator rules, docs/functions.md#globals) ----------------------------------
  let events = [];
  let objects = [];
  // Indexes of emitted events without a messageId: the host gives them a deterministic one.
  let noId = [];
  // A run may emit at most host.maxEmitted events and objects (checked at each emit) and
  // host.maxEmittedBytes of JSON; past either, the run fails and emits nothing, even if the
  // function caught the error.
  const EmitLimitError = errorClass('EmitLimitError');
  let overLimit;
  function admit() {
    if (overLimit === undefined && events.length + objects.length < host.maxEmitted) return;
    overLimit = overLimit || 'a run may emit at most ' + host.maxEmitted + ' events and objects';
    throw new EmitLimitError(overLimit + '; nothing was emitted');
  }
  const COMMON = ['userId', 'anonymousId', 'context', 'integrations', 'messageId', 'sentAt', 'timestamp'];
  function put(out, key, value) { if (value) out[key] = value; }
  function need(msg, field) {
    if (!msg || !msg[field]) throw new ValidationError(field + ' is required but not defined');
  }
  function emit(type, required, fields) {
    return function (msg) {
      for (const f of required) need(msg, f);
      if (!msg.userId && !msg.anonymousId) throw new ValidationError('One of userId,anonymousId is required but not defined');
      admit();
      const out = { type: type };
      for (const f of fields) put(out, f, msg[f]);
      for (const f of COMMON) put(out, f, msg[f]);
      if (!out.messageId) noId.push(events.length);
      events.push(out);
    };
  }
  g.Segment = Object.freeze({
    track: emit('track', ['event'], ['event', 'properties']),
    identify: emit('identify', [], ['traits']),
    page: emit('page', [], ['name', 'category', 'properties']),
    screen: emit('screen', [], ['name', 'properties']),
    group: emit('group', ['groupId'], ['groupId', 'traits']),
    alias: emit('alias', ['previousId'], ['previousId']),
    set: function (msg) {
      need(msg, 'collection');
      need(msg, 'id');
      admit();
      const out = { collection: String(msg.collection), id: String(msg.id) };
      put(out, 'properties', msg.properties);
      objects.push(out);
    },
  });

  // ---- the per-request driver -----------------------------------------------------------------
  let settled;
  function describe(e) {
    if (e instanceof Error) return { name: e.name || 'Error', message: String(e.message), stack: String(e.stack || '') };
    return { name: 'Error', message: show(e), stack: '' };
  }
  // Headers and URL are built on first use: most functions only call json().
  function makeRequest(body, headersJson, url) {
    let parsed;
    let done = false;
    let headers;
    let u;
    return {
      json() { if (!done) { parsed = JSON.parse(body); done = true; } return parsed; },
      text() { return body; },
      get headers() { if (headers === undefined) headers = new Headers(JSON.parse(headersJson)); return headers; },
      get url() { if (u === undefined) u = new URL(url); return u; },
    };
  }
  Object.defineProperty(g, '__run', {
    value: function (body, headersJson, url, settingsJson) {
      events = []; objects = []; noId = []; logs = []; logBytes = 0; settled = undefined;
      overLimit = undefined;
      pending.clear();
      timers.clear();
      let p;
      try {
        if (typeof g.onRequest !== 'function') throw new Error('the function does not define onRequest(request, settings)');
        p = Promise.resolve(g.onRequest(makeRequest(body, headersJson, url), JSON.parse(settingsJson)));
      } catch (e) {
        p = Promise.reject(e);
      }
      p.then(() => { settled = { ok: true }; }, (e) => { settled = assign({ ok: false }, describe(e)); });
    },
  });
  Object.defineProperty(g, '__poll', {
    value: function () {
      if (settled === undefined) return null;
      const failed = (name, message) =>
        stringify({ ok: false, name: name, message: message, stack: '', logs: logs, events: [], objects: [] });
      if (overLimit !== undefined) return failed('EmitLimitError', overLimit + '; nothing was emitted');
      let out;
      try {
        out = stringify(assign({}, settled, { logs: logs, events: events, no_id: noId, objects: objects }));
      } catch (e) {
        return failed('InvalidEventPayload', 'an emitted event is not JSON: ' + e.message);
      }
      if (settled.ok && out.length > host.maxEmittedBytes) {
        return failed('EmitLimitError', 'a run may emit at most ' + host.maxEmittedBytes +
          ' characters of events and objects as JSON; this one emitted ' + out.length + '; nothing was emitted');
      }
      return out;
    },
  });
})(globalThis);
