// <leadwatch-analytics api-base="https://..." tenant="macrea" lang="fr|en" days="30">: the KPIs the
// reference's deployment checklist tracks, drawn from GET /api/alerts/analytics — alerts per day
// (created, resolved, escalated), the share resolved within 24 h, time to resolve by type and by
// owner, open alerts by age. Charts by the vendored Chart.js (vendor/chart.js/, pinned), loaded
// from beside this file on first use. Same API client and auth as <leadwatch-alerts>.

import { callApi, escapeHtml as h, languageOf } from './leadwatch-client.js'
import { errorText } from './leadwatch-errors.js'

const CHART_URL = new URL('./vendor/chart.js/chart.umd.min.js', import.meta.url).href
const COLORS = { created: '#1d4ed8', resolved: '#15803d', escalated: '#b91c1c', open: '#6d28d9' }

const TEXTS = {
  fr: {
    title: 'Statistiques des alertes',
    period: (from, to) => `Du ${from} au ${to}`,
    refresh: 'Actualiser les statistiques',
    loading: 'Chargement des statistiques…',
    loadFailed: 'Impossible de charger les statistiques',
    unavailable: "Les statistiques ne sont pas disponibles sur ce serveur (GET /api/alerts/analytics n'existe pas).",
    retry: 'Réessayer',
    within24h: 'Résolues en moins de 24 h',
    share: (pct, within, resolved) => `${pct} % (${within} sur ${resolved})`,
    noneResolved: 'aucune alerte résolue sur la période',
    perDay: 'Alertes par jour',
    series: { created: 'Créées', resolved: 'Résolues', escalated: 'Escaladées' },
    perDaySummary: (c, r, e) => `Alertes par jour : ${c} créées, ${r} résolues, ${e} escaladées sur la période`,
    openByAge: 'Alertes ouvertes par ancienneté',
    open: 'Ouvertes',
    openSummary: (parts) => `Alertes ouvertes par ancienneté : ${parts}`,
    byType: 'Temps de résolution par type',
    byOwner: 'Temps de résolution par commercial',
    columns: { type: 'Type', owner: 'Commercial', count: 'Résolues', median: 'Médiane (h)', p90: 'P90 (h)' },
    noOwner: 'Sans commercial',
    noRows: 'Aucune alerte résolue sur la période.',
  },
  en: {
    title: 'Alert analytics',
    period: (from, to) => `From ${from} to ${to}`,
    refresh: 'Refresh the analytics',
    loading: 'Loading the analytics…',
    loadFailed: 'Could not load the analytics',
    unavailable: 'Analytics are not available on this server (GET /api/alerts/analytics does not exist).',
    retry: 'Retry',
    within24h: 'Resolved within 24 h',
    share: (pct, within, resolved) => `${pct}% (${within} of ${resolved})`,
    noneResolved: 'no alert resolved in the period',
    perDay: 'Alerts per day',
    series: { created: 'Created', resolved: 'Resolved', escalated: 'Escalated' },
    perDaySummary: (c, r, e) => `Alerts per day: ${c} created, ${r} resolved, ${e} escalated in the period`,
    openByAge: 'Open alerts by age',
    open: 'Open',
    openSummary: (parts) => `Open alerts by age: ${parts}`,
    byType: 'Time to resolve by type',
    byOwner: 'Time to resolve by owner',
    columns: { type: 'Type', owner: 'Owner', count: 'Resolved', median: 'Median (h)', p90: 'P90 (h)' },
    noOwner: 'No owner',
    noRows: 'No alert resolved in the period.',
  },
}

const STYLE = `
:host { display: block; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1f2937; }
.card { border: 1px solid #d1d5db; border-radius: 10px; background: #fff; padding: 16px; }
header { display: flex; align-items: baseline; gap: 10px; flex-wrap: wrap; }
h2 { font-size: 1.15rem; margin: 0; }
h3 { font-size: 0.95rem; margin: 16px 0 6px; }
.period { color: #4b5563; flex: 1; white-space: nowrap; }
button { font: inherit; cursor: pointer; border-radius: 6px; border: 1px solid #9ca3af; background: #fff; color: #1f2937; padding: 3px 10px; }
button:focus-visible { outline: 3px solid #2563eb; outline-offset: 2px; }
.kpi { margin: 12px 0 0; font-size: 1rem; }
.kpi strong { font-size: 1.3rem; }
.charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(280px, 1fr)); gap: 16px; }
.chart { position: relative; height: 220px; }
table { border-collapse: collapse; width: 100%; font-size: 0.9rem; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid #e5e7eb; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
.tables { display: grid; grid-template-columns: repeat(auto-fit, minmax(280px, 1fr)); gap: 16px; }
.state { padding: 20px 8px; text-align: center; }
`

let chartLoading = null

/** window.Chart, loading the vendored build beside this file the first time. */
function loadChart() {
  if (globalThis.Chart) return Promise.resolve(globalThis.Chart)
  chartLoading ??= new Promise((resolve, reject) => {
    const script = document.createElement('script')
    script.src = CHART_URL
    script.onload = () => resolve(globalThis.Chart)
    script.onerror = () => {
      chartLoading = null
      reject(new Error(`Chart.js could not be loaded from ${CHART_URL}`))
    }
    document.head.append(script)
  })
  return chartLoading
}

function isoDay(date) {
  return `${date.getFullYear()}-${String(date.getMonth() + 1).padStart(2, '0')}-${String(date.getDate()).padStart(2, '0')}`
}

function hours(value) {
  return value == null ? '—' : Number(value).toFixed(1)
}

export class LeadwatchAnalyticsElement extends HTMLElement {
  static define(tag = 'leadwatch-analytics', registry = customElements) {
    if (!registry.get(tag)) registry.define(tag, this)
    return this
  }

  static get observedAttributes() {
    return ['api-base', 'tenant', 'lang', 'days', 'tz']
  }

  #getToken = null
  #seq = 0
  #charts = []
  #state = { status: 'loading', data: null, error: null }

  get apiBase() {
    return (this.getAttribute('api-base') || '').replace(/\/+$/, '')
  }
  set apiBase(value) {
    this.setAttribute('api-base', value)
  }
  get tenant() {
    return this.getAttribute('tenant') || ''
  }
  set tenant(value) {
    this.setAttribute('tenant', value)
  }
  get lang() {
    return languageOf(this, Object.keys(TEXTS))
  }
  set lang(value) {
    this.setAttribute('lang', value)
  }
  /** How many days back from today (default 30). */
  get days() {
    const n = Number.parseInt(this.getAttribute('days') || '30', 10)
    return Number.isFinite(n) && n > 0 ? n : 30
  }
  set days(value) {
    this.setAttribute('days', String(value))
  }
  /** The IANA time zone the days are counted in (default: the browser's). */
  get tz() {
    return this.getAttribute('tz') || Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC'
  }
  set tz(value) {
    this.setAttribute('tz', value)
  }
  get getToken() {
    return this.#getToken
  }
  set getToken(fn) {
    this.#getToken = typeof fn === 'function' ? fn : null
    if (this.isConnected) this.refresh()
  }

  connectedCallback() {
    if (Object.hasOwn(this, 'getToken')) {
      const fn = this.getToken
      delete this.getToken
      this.#getToken = typeof fn === 'function' ? fn : null
    }
    if (!this.shadowRoot) {
      this.attachShadow({ mode: 'open' }).addEventListener('click', (event) => {
        if (event.target.closest('[data-do="refresh"]')) this.refresh()
      })
    }
    this.refresh()
  }

  disconnectedCallback() {
    this.#destroyCharts()
  }

  attributeChangedCallback(name, previous, value) {
    if (!this.isConnected || !this.shadowRoot || previous === value) return
    if (name === 'lang') this.#render()
    else this.refresh()
  }

  async refresh() {
    const seq = ++this.#seq
    const to = new Date()
    const from = new Date(to)
    from.setDate(from.getDate() - (this.days - 1))
    const query = new URLSearchParams({ from: isoDay(from), to: isoDay(to), tz: this.tz })
    this.#set({ status: this.#state.data ? 'ready' : 'loading' })
    try {
      const [data] = await Promise.all([callApi(this, 'GET', `/api/alerts/analytics?${query}`), loadChart()])
      if (seq === this.#seq) this.#set({ status: 'ready', data, error: null })
    } catch (error) {
      if (seq !== this.#seq) return
      const absent = error.status === 404 && error.code === 'not_found'
      this.#set({ status: absent ? 'unavailable' : 'error', data: null, error })
    }
  }

  #set(changes) {
    Object.assign(this.#state, changes)
    this.#render()
  }

  #destroyCharts() {
    for (const chart of this.#charts) chart.destroy()
    this.#charts = []
  }

  /** The one function that draws the state. */
  #render() {
    const root = this.shadowRoot
    if (!root) return
    const t = TEXTS[this.lang]
    const { status, data } = this.#state
    this.#destroyCharts()
    const period = data ? `<span class="period">${h(t.period(data.from, data.to))}</span>` : '<span class="period"></span>'
    root.innerHTML = `<style>${STYLE}</style>
      <section class="card" aria-labelledby="title" aria-busy="${status === 'loading'}" data-state="${status}">
        <header><h2 id="title">${h(t.title)}</h2>${period}
          <button type="button" data-do="refresh">${h(t.refresh)}</button></header>
        ${this.#body(t)}
      </section>`
    if (status === 'ready') this.#draw(t, data)
  }

  #body(t) {
    const { status, data, error } = this.#state
    if (status === 'loading') return `<p class="state">${h(t.loading)}</p>`
    if (status === 'unavailable') return `<p class="state">${h(t.unavailable)}</p>`
    if (status === 'error') {
      return `<div class="state" role="alert"><p><strong>${h(t.loadFailed)}</strong></p><p>${h(error ? errorText(error, this.lang) : '')}</p>
        <button type="button" data-do="refresh">${h(t.retry)}</button></div>`
    }
    const r24 = data.resolved_within_24h || {}
    const share = r24.share == null ? t.noneResolved : t.share(Math.round(r24.share * 1000) / 10, r24.within_24h, r24.resolved)
    const sum = (key) => (data.per_day || []).reduce((n, d) => n + (d[key] || 0), 0)
    const ages = (data.open_by_age || []).map((b) => `${b.bucket} ${b.count}`).join(', ')
    return `
      <p class="kpi" data-ref="within24h">${h(t.within24h)} : <strong>${h(share)}</strong></p>
      <div class="charts">
        <figure><h3 id="per-day">${h(t.perDay)}</h3>
          <div class="chart"><canvas data-chart="per-day" role="img" aria-label="${h(t.perDaySummary(sum('created'), sum('resolved'), sum('escalated')))}"></canvas></div></figure>
        <figure><h3 id="by-age">${h(t.openByAge)}</h3>
          <div class="chart"><canvas data-chart="open-by-age" role="img" aria-label="${h(t.openSummary(ages))}"></canvas></div></figure>
      </div>
      <div class="tables">
        ${this.#table(t, t.byType, 'type', data.time_to_resolve?.by_type || [], (row) => row.type)}
        ${this.#table(t, t.byOwner, 'owner', data.time_to_resolve?.by_owner || [], (row) => row.owner_id ?? t.noOwner)}
      </div>`
  }

  #table(t, caption, key, rows, name) {
    if (!rows.length) return `<div><h3>${h(caption)}</h3><p>${h(t.noRows)}</p></div>`
    const body = rows
      .map((row) => `<tr><td>${h(name(row))}</td><td class="n">${h(row.count)}</td><td class="n">${hours(row.median_hours)}</td><td class="n">${hours(row.p90_hours)}</td></tr>`)
      .join('')
    return `<table data-table="${key}"><caption><h3>${h(caption)}</h3></caption>
      <thead><tr><th scope="col">${h(t.columns[key])}</th><th scope="col">${h(t.columns.count)}</th><th scope="col">${h(t.columns.median)}</th><th scope="col">${h(t.columns.p90)}</th></tr></thead>
      <tbody>${body}</tbody></table>`
  }

  #draw(t, data) {
    const Chart = globalThis.Chart
    const common = { animation: false, responsive: true, maintainAspectRatio: false, plugins: { legend: { position: 'bottom' } } }
    const days = data.per_day || []
    const perDay = this.shadowRoot.querySelector('[data-chart="per-day"]')
    this.#charts.push(
      new Chart(perDay, {
        type: 'bar',
        data: {
          labels: days.map((d) => d.day.slice(5)),
          datasets: ['created', 'resolved', 'escalated'].map((key) => ({
            label: t.series[key],
            data: days.map((d) => d[key] || 0),
            backgroundColor: COLORS[key],
          })),
        },
        options: { ...common, scales: { y: { beginAtZero: true, ticks: { precision: 0 } } } },
      }),
    )
    const buckets = data.open_by_age || []
    const byAge = this.shadowRoot.querySelector('[data-chart="open-by-age"]')
    this.#charts.push(
      new Chart(byAge, {
        type: 'bar',
        data: { labels: buckets.map((b) => b.bucket), datasets: [{ label: t.open, data: buckets.map((b) => b.count), backgroundColor: COLORS.open }] },
        options: { ...common, plugins: { legend: { display: false } }, scales: { y: { beginAtZero: true, ticks: { precision: 0 } } } },
      }),
    )
  }
}

LeadwatchAnalyticsElement.define()
