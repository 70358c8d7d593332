// <leadwatch-alerts api-base="https://..." tenant="macrea" lang="fr|en">: the living-alerts widget.
//
// The reference's dashboard widget (alertes-vivantes, phases C and D) as a standard custom element:
// loading, error (with retry), the "living" empty state and the list (total, severity badges,
// high → med → low then newest); Résoudre (optimistic, rolled back on failure), Action (what was
// sent, or why not; an action that cannot run is shown so before any click; a call is a tel: link and
// the outcome the user picks, logged as a call); snooze and bulk selection where the API describes them; refresh every 60 s
// while the page is visible, and on demand. It talks only to the public HTTP API (leadwatch-client.js).
//
// Auth: open dev mode needs only `tenant` (sent as X-Tenant). Deployed, the host page sets
// `element.getToken = async () => session.access_token` and the user's token goes as the bearer.
//
// Errors are said from the API's error code, in the element's language (leadwatch-errors.js). The lead's
// name links to its page in EspoCRM when the API gives `lead_url`.
//
// Events (bubbling, composed): leadwatch:resolved {id, alert}, leadwatch:action {id, sent},
// leadwatch:call-logged {id, outcome, activity}, leadwatch:snoozed {ids, until}.

import { callApi, describedPaths, escapeHtml as h, languageOf } from './leadwatch-client.js'
import { errorText } from './leadwatch-errors.js'

const REFRESH_MS = 60_000
const PAGE_SIZE = 50
const SEVERITIES = ['high', 'med', 'low']
const SNOOZES = ['4h', 'tomorrow', 'nextweek']
// A call's outcome → the status of the call activity logged (docs/actions.md): no answer is not contact.
const CALL_STATUSES = { reached: 'answered', no_answer: 'no_answer', voicemail: 'voicemail' }

const TEXTS = {
  fr: {
    title: 'Alertes',
    loading: 'Chargement des alertes…',
    loadFailed: 'Impossible de charger les alertes',
    retry: 'Réessayer',
    refresh: 'Actualiser',
    refreshFailed: (why) => `Actualisation impossible : ${why}`,
    emptyTitle: "R.A.S. aujourd'hui. Ton pipeline est propre.",
    emptyBody: "Si tu veux, je peux surveiller les leads silencieux et te prévenir dès qu'un contact devient froid.",
    total: (n) => `${n} alerte${n > 1 ? 's' : ''}`,
    severity: { high: 'Haute', med: 'Moyenne', low: 'Basse' },
    severityCount: (label, n) => `${label} : ${n}`,
    list: 'Alertes actives',
    suggested: 'Action suggérée',
    colon: ' : ',
    resolve: 'Résoudre',
    action: 'Action',
    forLead: (verb, lead) => `${verb} – ${lead}`,
    actionName: (label, lead) => `Action : ${label} – ${lead}`,
    resolved: (lead) => `Alerte résolue : ${lead}.`,
    resolveFailed: (lead, why) => `Impossible de résoudre l'alerte de ${lead} : ${why}. Elle est de retour dans la liste.`,
    sending: 'Envoi…',
    sent: (lead, channel, message) => `Envoyé à ${lead} ${channel === 'email' ? 'par e-mail' : 'sur WhatsApp'} : « ${message} »`,
    notSent: (lead, why) => `Action non exécutée pour ${lead} : ${why}`,
    unavailable: (why) => `Action indisponible : ${why}.`,
    call: (phone) => `Appeler le ${phone}`,
    outcome: "Résultat de l'appel",
    outcomeFor: (lead) => `Résultat de l'appel – ${lead}`,
    outcomes: { reached: 'Joint', no_answer: 'Pas de réponse', voicemail: 'Messagerie vocale' },
    outcomeSnippets: { reached: 'Appel : lead joint', no_answer: 'Appel : pas de réponse', voicemail: 'Appel : message laissé sur la messagerie' },
    callLogged: (lead, outcome) => `Appel de ${lead} enregistré : ${outcome}.`,
    callNotLogged: (lead, why) => `Appel de ${lead} non enregistré : ${why}`,
    openLead: (lead) => `Ouvrir ${lead} dans EspoCRM`,
    snooze: 'Reporter',
    snoozeTo: { '4h': '4 h', tomorrow: 'Demain', nextweek: 'Semaine prochaine' },
    snoozed: (n) => `${n} alerte${n > 1 ? 's' : ''} reportée${n > 1 ? 's' : ''}.`,
    snoozeFailed: (why) => `Report impossible : ${why}. Les alertes sont de retour dans la liste.`,
    select: (lead) => `Sélectionner l'alerte de ${lead}`,
    selectAll: 'Tout sélectionner',
    selected: (n) => `${n} sélectionnée${n > 1 ? 's' : ''}`,
    resolveSelected: 'Résoudre la sélection',
    snoozeSelected: 'Reporter la sélection',
    bulkResolved: (n) => `${n} alerte${n > 1 ? 's' : ''} résolue${n > 1 ? 's' : ''}.`,
    bulkFailed: (why) => `Action groupée impossible : ${why}. Les alertes sont de retour dans la liste.`,
    more: 'Voir plus',
    updated: (time) => `Mis à jour à ${time}`,
    dismiss: 'Fermer le message',
    unknownLead: 'Lead sans nom',
  },
  en: {
    title: 'Alerts',
    loading: 'Loading alerts…',
    loadFailed: 'Could not load the alerts',
    retry: 'Retry',
    refresh: 'Refresh',
    refreshFailed: (why) => `Could not refresh: ${why}`,
    emptyTitle: 'All clear today. Your pipeline is clean.',
    emptyBody: 'If you like, I can watch the silent leads and tell you as soon as a contact goes cold.',
    total: (n) => `${n} alert${n === 1 ? '' : 's'}`,
    severity: { high: 'High', med: 'Medium', low: 'Low' },
    severityCount: (label, n) => `${label}: ${n}`,
    list: 'Active alerts',
    suggested: 'Suggested action',
    colon: ': ',
    resolve: 'Resolve',
    action: 'Action',
    forLead: (verb, lead) => `${verb} – ${lead}`,
    actionName: (label, lead) => `Action: ${label} – ${lead}`,
    resolved: (lead) => `Alert resolved: ${lead}.`,
    resolveFailed: (lead, why) => `Could not resolve the alert for ${lead}: ${why}. It is back in the list.`,
    sending: 'Sending…',
    sent: (lead, channel, message) => `Sent to ${lead} ${channel === 'email' ? 'by email' : 'on WhatsApp'}: “${message}”`,
    notSent: (lead, why) => `Action not run for ${lead}: ${why}`,
    unavailable: (why) => `Action unavailable: ${why}.`,
    call: (phone) => `Call ${phone}`,
    outcome: 'Call outcome',
    outcomeFor: (lead) => `Call outcome – ${lead}`,
    outcomes: { reached: 'Reached', no_answer: 'No answer', voicemail: 'Voicemail' },
    outcomeSnippets: { reached: 'Call: lead reached', no_answer: 'Call: no answer', voicemail: 'Call: left a voicemail' },
    callLogged: (lead, outcome) => `Call with ${lead} logged: ${outcome}.`,
    callNotLogged: (lead, why) => `Call with ${lead} not logged: ${why}`,
    openLead: (lead) => `Open ${lead} in EspoCRM`,
    snooze: 'Snooze',
    snoozeTo: { '4h': '4 h', tomorrow: 'Tomorrow', nextweek: 'Next week' },
    snoozed: (n) => `${n} alert${n === 1 ? '' : 's'} snoozed.`,
    snoozeFailed: (why) => `Could not snooze: ${why}. The alerts are back in the list.`,
    select: (lead) => `Select the alert for ${lead}`,
    selectAll: 'Select all',
    selected: (n) => `${n} selected`,
    resolveSelected: 'Resolve selected',
    snoozeSelected: 'Snooze selected',
    bulkResolved: (n) => `${n} alert${n === 1 ? '' : 's'} resolved.`,
    bulkFailed: (why) => `Could not apply to the selection: ${why}. The alerts are back in the list.`,
    more: 'Show more',
    updated: (time) => `Updated at ${time}`,
    dismiss: 'Dismiss the message',
    unknownLead: 'Unnamed lead',
  },
}

const STYLE = `
:host { display: block; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1f2937; }
[hidden] { display: none !important; }
.card { border: 1px solid #d1d5db; border-radius: 10px; background: #fff; padding: 16px; }
header { display: flex; align-items: center; gap: 8px; flex-wrap: wrap; }
h2 { font-size: 1.15rem; margin: 0; }
.total { background: #e5e7eb; color: #1f2937; border-radius: 999px; padding: 1px 10px; font-weight: 600; }
.spacer { flex: 1; }
.badges { display: flex; gap: 6px; margin: 10px 0 0; padding: 0; list-style: none; flex-wrap: wrap; }
.badge { border-radius: 999px; padding: 1px 9px; font-size: 0.85rem; font-weight: 600; white-space: nowrap; }
.high { background: #fde2e1; color: #8a1c12; }
.med { background: #fff1c2; color: #6b4a00; }
.low { background: #dbeafe; color: #1e3a8a; }
button, summary { font: inherit; cursor: pointer; border-radius: 6px; border: 1px solid #9ca3af; background: #fff; color: #1f2937; padding: 3px 10px; }
button.primary { background: #1d4ed8; border-color: #1d4ed8; color: #fff; }
button[disabled], button[aria-disabled="true"], button[aria-busy="true"] { opacity: 0.6; cursor: progress; }
button[disabled].unrunnable { cursor: not-allowed; }
button:focus-visible, summary:focus-visible, input:focus-visible, a:focus-visible { outline: 3px solid #2563eb; outline-offset: 2px; }
summary { display: inline-block; list-style: none; }
summary::-webkit-details-marker { display: none; }
details { display: inline-block; position: relative; }
details[open] > .menu { display: flex; }
.menu { display: none; gap: 4px; position: absolute; z-index: 1; background: #fff; border: 1px solid #d1d5db; border-radius: 6px; padding: 4px; margin-top: 4px; white-space: nowrap; }
.notice { margin: 10px 0 0; padding: 8px 10px; border-radius: 6px; display: flex; gap: 8px; align-items: start; }
.notice.ok { background: #dcfce7; color: #14532d; }
.notice.error { background: #fde2e1; color: #7f1d1d; }
.notice p { margin: 0; flex: 1; }
.state { padding: 24px 8px; text-align: center; }
.state p { margin: 4px 0; }
.empty .lead-in { font-weight: 600; font-size: 1.05rem; }
.error .detail { color: #4b5563; font-size: 0.9rem; }
.bulk { display: flex; gap: 8px; align-items: center; margin-top: 12px; flex-wrap: wrap; }
ul.alerts { list-style: none; padding: 0; margin: 12px 0 0; display: grid; gap: 8px; }
li.alert { border: 1px solid #e5e7eb; border-left: 5px solid #9ca3af; border-radius: 8px; padding: 10px 12px; display: flex; gap: 10px; }
li.alert > .content { flex: 1; min-width: 0; }
li.alert.sev-high { border-left-color: #b91c1c; }
li.alert.sev-med { border-left-color: #b45309; }
li.alert.sev-low { border-left-color: #1d4ed8; }
li.alert > .select { padding-top: 2px; }
.who { display: flex; gap: 8px; align-items: baseline; flex-wrap: wrap; }
.who a { color: #1e40af; }
.meta { color: #4b5563; font-size: 0.85rem; display: flex; gap: 8px; align-items: center; flex-wrap: wrap; margin-top: 2px; }
.message { margin: 6px 0 2px; }
.suggested { margin: 0 0 8px; color: #374151; font-size: 0.9rem; }
.unavailable { margin: 0 0 8px; color: #7f1d1d; font-size: 0.9rem; }
a.call { display: inline-block; text-decoration: none; border-radius: 6px; border: 1px solid #1d4ed8; color: #1d4ed8; padding: 3px 10px; }
.buttons { display: flex; gap: 6px; flex-wrap: wrap; }
.more { margin-top: 10px; }
footer { margin-top: 10px; color: #4b5563; font-size: 0.8rem; }
`

/** Sort as the reference's view does: high → med → low, then newest first. */
function byDashboardOrder(a, b) {
  return (
    SEVERITIES.indexOf(a.severity) - SEVERITIES.indexOf(b.severity) ||
    Date.parse(b.created_at) - Date.parse(a.created_at) ||
    (b.created_at > a.created_at) - (b.created_at < a.created_at) || // microseconds
    (b.id > a.id) - (b.id < a.id)
  )
}

/** The snooze body for a choice: a duration the API reads, or a local time as an ISO instant. */
function snoozeTarget(choice, now = new Date()) {
  if (choice === '4h') return { for: '4h' }
  const at = new Date(now)
  at.setHours(9, 0, 0, 0)
  at.setDate(at.getDate() + (choice === 'tomorrow' ? 1 : (8 - at.getDay()) % 7 || 7))
  return { until: at.toISOString() }
}

export class LeadwatchAlertsElement extends HTMLElement {
  static define(tag = 'leadwatch-alerts', registry = customElements) {
    if (!registry.get(tag)) registry.define(tag, this)
    return this
  }

  static get observedAttributes() {
    return ['api-base', 'tenant', 'lang']
  }

  #getToken = null
  #timer = null
  #seq = 0
  #state = LeadwatchAlertsElement.#initialState()
  #onVisibility = () => {
    this.#schedule()
    if (!document.hidden) this.refresh()
  }

  static #initialState() {
    return {
      status: 'loading', // loading | error | ready
      alerts: [],
      stats: null,
      nextCursor: null,
      error: null, // why the list could not be loaded
      notice: null, // {kind: 'ok' | 'error', text}: the outcome of the last action
      refreshing: false,
      pending: new Set(), // ids removed optimistically, their call in flight
      acting: new Set(), // ids whose action is being run
      selected: new Set(),
      features: { snooze: false, bulk: false },
      updatedAt: null,
    }
  }

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
  /** `async () => accessToken`: the signed-in user's Supabase access token, sent as the bearer. */
  get getToken() {
    return this.#getToken
  }
  set getToken(fn) {
    this.#getToken = typeof fn === 'function' ? fn : null
    if (this.isConnected && this.shadowRoot) {
      this.#detectFeatures()
      this.refresh()
    }
  }

  connectedCallback() {
    if (Object.hasOwn(this, 'getToken')) {
      // set before the element was defined: move it onto the accessor
      const fn = this.getToken
      delete this.getToken
      this.#getToken = typeof fn === 'function' ? fn : null
    }
    if (!this.shadowRoot) this.#build()
    document.addEventListener('visibilitychange', this.#onVisibility)
    this.#schedule()
    this.#detectFeatures()
    this.refresh()
  }

  disconnectedCallback() {
    document.removeEventListener('visibilitychange', this.#onVisibility)
    clearInterval(this.#timer)
    this.#timer = null
  }

  attributeChangedCallback(name, previous, value) {
    if (!this.isConnected || !this.shadowRoot || previous === value) return
    if (name === 'lang') return this.#render()
    this.#state = LeadwatchAlertsElement.#initialState()
    this.#detectFeatures()
    this.refresh()
  }

  /** Reload the first page of alerts (the refresh button, the 60 s timer, the return to the tab). */
  async refresh() {
    const seq = ++this.#seq
    this.#set({ refreshing: true, status: this.#state.status === 'error' ? 'loading' : this.#state.status })
    try {
      const body = await callApi(this, 'GET', `/api/alerts/active?limit=${PAGE_SIZE}`)
      if (seq !== this.#seq) return
      const listed = new Set(body.alerts.map((a) => a.id))
      this.#set({
        selected: new Set([...this.#state.selected].filter((id) => listed.has(id))),
        status: 'ready',
        alerts: body.alerts.filter((a) => !this.#state.pending.has(a.id)).sort(byDashboardOrder),
        stats: this.#withoutPending(body.stats, body.alerts),
        nextCursor: body.next_cursor || null,
        error: null,
        refreshing: false,
        updatedAt: new Date(),
      })
    } catch (error) {
      if (seq !== this.#seq) return
      if (this.#state.status === 'ready') {
        this.#set({ refreshing: false, notice: { kind: 'error', text: this.#t.refreshFailed(this.#why(error)) } })
      } else {
        this.#set({ status: 'error', error, refreshing: false })
      }
    }
  }

  async loadMore() {
    const { nextCursor } = this.#state
    if (!nextCursor) return
    try {
      const body = await callApi(this, 'GET', `/api/alerts/active?limit=${PAGE_SIZE}&cursor=${encodeURIComponent(nextCursor)}`)
      const known = new Set(this.#state.alerts.map((a) => a.id))
      const more = body.alerts.filter((a) => !known.has(a.id) && !this.#state.pending.has(a.id))
      this.#set({ alerts: [...this.#state.alerts, ...more].sort(byDashboardOrder), nextCursor: body.next_cursor || null })
    } catch (error) {
      this.#set({ notice: { kind: 'error', text: this.#t.refreshFailed(this.#why(error)) } })
    }
  }

  /** Résoudre: the alert leaves the list at once; the call failing puts it back, with the reason. */
  async resolve(id) {
    const alert = this.#find(id)
    if (!alert) return
    const removed = this.#removeOptimistically([alert])
    try {
      const body = await callApi(this, 'POST', `/api/alerts/${encodeURIComponent(id)}/resolve`)
      this.#settle(removed)
      this.#set({ notice: { kind: 'ok', text: this.#t.resolved(this.#leadName(alert)) } })
      this.#emit('leadwatch:resolved', { id, alert: body.alert })
    } catch (error) {
      this.#rollBack(removed, this.#t.resolveFailed(this.#leadName(alert), this.#why(error)))
    }
  }

  /** Action: run the alert's suggested action; say what was sent, or why not. */
  async runAction(id) {
    const alert = this.#find(id)
    if (!alert || this.#state.acting.has(id)) return
    this.#state.acting.add(id)
    this.#set({ notice: null })
    try {
      const body = await callApi(this, 'POST', `/api/alerts/${encodeURIComponent(id)}/action`)
      this.#state.acting.delete(id)
      this.#set({ notice: { kind: 'ok', text: this.#t.sent(this.#leadName(alert), body.sent?.channel, body.sent?.message ?? '') } })
      this.#emit('leadwatch:action', { id, sent: body.sent })
      this.refresh() // the send is an activity: it may have resolved this alert
    } catch (error) {
      this.#state.acting.delete(id)
      this.#set({ notice: { kind: 'error', text: this.#t.notSent(this.#leadName(alert), this.#why(error)) } })
    }
  }

  /** A call's outcome (reached, no_answer, voicemail), logged as an outbound call of the lead. */
  async logCall(id, outcome) {
    const alert = this.#find(id)
    if (!alert || !Object.hasOwn(CALL_STATUSES, outcome) || this.#state.acting.has(id)) return
    this.#state.acting.add(id)
    this.#set({ notice: null })
    const body = {
      leadId: alert.lead_id,
      channel: 'call',
      direction: 'out',
      status: CALL_STATUSES[outcome],
      messageSnippet: this.#t.outcomeSnippets[outcome],
      meta: { source: 'leadwatch-alerts', outcome, alertId: alert.id, alertType: alert.type },
    }
    try {
      const logged = await callApi(this, 'POST', '/api/activities/log', { body })
      this.#state.acting.delete(id)
      this.#set({ notice: { kind: 'ok', text: this.#t.callLogged(this.#leadName(alert), this.#t.outcomes[outcome]) } })
      this.#emit('leadwatch:call-logged', { id, outcome, activity: logged.activity })
      this.refresh() // a call that reached the lead answers its alert
    } catch (error) {
      this.#state.acting.delete(id)
      this.#set({ notice: { kind: 'error', text: this.#t.callNotLogged(this.#leadName(alert), this.#why(error)) } })
    }
  }

  /** Snooze alerts (`choice`: 4h, tomorrow, nextweek); one alert alone, several through the bulk route. */
  async snooze(ids, choice) {
    const alerts = ids.map((id) => this.#find(id)).filter(Boolean)
    if (!alerts.length || !SNOOZES.includes(choice)) return
    const target = snoozeTarget(choice)
    const removed = this.#removeOptimistically(alerts)
    try {
      if (alerts.length === 1) {
        await callApi(this, 'POST', `/api/alerts/${encodeURIComponent(alerts[0].id)}/snooze`, { body: target })
      } else {
        await callApi(this, 'POST', '/api/alerts/bulk', { body: { action: 'snooze', ids: alerts.map((a) => a.id), ...target } })
      }
      this.#settle(removed)
      this.#set({ notice: { kind: 'ok', text: this.#t.snoozed(alerts.length) } })
      this.#emit('leadwatch:snoozed', { ids: alerts.map((a) => a.id), ...target })
    } catch (error) {
      this.#rollBack(removed, this.#t.snoozeFailed(this.#why(error)))
    }
  }

  async resolveSelected() {
    const alerts = [...this.#state.selected].map((id) => this.#find(id)).filter(Boolean)
    if (!alerts.length) return
    const removed = this.#removeOptimistically(alerts)
    try {
      const body = await callApi(this, 'POST', '/api/alerts/bulk', { body: { action: 'resolve', ids: alerts.map((a) => a.id) } })
      this.#settle(removed)
      this.#set({ notice: { kind: 'ok', text: this.#t.bulkResolved(body.done ?? alerts.length) } })
      for (const alert of alerts) this.#emit('leadwatch:resolved', { id: alert.id, alert })
    } catch (error) {
      this.#rollBack(removed, this.#t.bulkFailed(this.#why(error)))
    }
  }

  // State ----------------------------------------------------------------------------------------

  get #t() {
    return TEXTS[this.lang]
  }

  #set(changes) {
    Object.assign(this.#state, changes)
    this.#render()
  }

  /** Why a call failed, in the element's language, from its error code. */
  #why(error) {
    return errorText(error, this.lang)
  }

  #find(id) {
    return this.#state.alerts.find((a) => a.id === id)
  }

  #leadName(alert) {
    return alert.lead_name || alert.lead_id || this.#t.unknownLead
  }

  #removeOptimistically(alerts) {
    const ids = new Set(alerts.map((a) => a.id))
    for (const id of ids) {
      this.#state.pending.add(id)
      this.#state.selected.delete(id)
    }
    this.#set({
      alerts: this.#state.alerts.filter((a) => !ids.has(a.id)),
      stats: this.#count(this.#state.stats, alerts, -1),
      notice: null,
    })
    return alerts
  }

  #settle(alerts) {
    for (const alert of alerts) this.#state.pending.delete(alert.id)
  }

  #rollBack(alerts, text) {
    this.#settle(alerts)
    const shown = new Set(this.#state.alerts.map((a) => a.id))
    const back = alerts.filter((a) => !shown.has(a.id))
    this.#set({
      alerts: [...this.#state.alerts, ...back].sort(byDashboardOrder),
      stats: this.#count(this.#state.stats, back, +1),
      notice: { kind: 'error', text },
    })
  }

  /** The stats with `alerts` counted `sign` times more (optimistic updates). */
  #count(stats, alerts, sign) {
    if (!stats) return stats
    const bySeverity = { ...stats.by_severity }
    for (const a of alerts) bySeverity[a.severity] = Math.max(0, (bySeverity[a.severity] || 0) + sign)
    return { ...stats, total: Math.max(0, stats.total + sign * alerts.length), by_severity: bySeverity }
  }

  #withoutPending(stats, alerts) {
    return this.#count(stats, alerts.filter((a) => this.#state.pending.has(a.id)), -1)
  }

  async #detectFeatures() {
    const paths = await describedPaths(this)
    const snooze = [...paths].some((p) => /^\/api\/alerts\/\{[^}]+\}\/snooze$/.test(p))
    this.#set({ features: { snooze, bulk: paths.has('/api/alerts/bulk') } })
  }

  #schedule() {
    clearInterval(this.#timer)
    this.#timer = document.hidden ? null : setInterval(() => this.refresh(), REFRESH_MS)
  }

  #emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail, bubbles: true, composed: true }))
  }

  // View -----------------------------------------------------------------------------------------

  #build() {
    const root = this.attachShadow({ mode: 'open' })
    root.innerHTML = `<style>${STYLE}</style>
      <section class="card" aria-labelledby="title">
        <header>
          <h2 id="title" tabindex="-1"></h2>
          <span class="total" data-ref="total" hidden></span>
          <span class="spacer"></span>
          <button type="button" data-do="refresh" data-focus="refresh"></button>
        </header>
        <ul class="badges" data-ref="badges" hidden></ul>
        <div data-ref="notice" role="status" aria-live="polite"></div>
        <div data-ref="body"></div>
        <footer data-ref="footer"></footer>
      </section>`
    root.addEventListener('click', (event) => this.#onClick(event))
    root.addEventListener('change', (event) => this.#onChange(event))
    root.addEventListener('keydown', (event) => {
      const menu = event.key === 'Escape' && event.target.closest('details[open]')
      if (menu) {
        menu.open = false
        menu.querySelector('summary').focus()
      }
    })
  }

  #onClick(event) {
    const button = event.target.closest('[data-do]')
    if (!button || button.disabled || button.getAttribute('aria-disabled') === 'true') return
    const id = button.closest('[data-id]')?.dataset.id
    const act = button.dataset.do
    if (act === 'refresh' || act === 'retry') this.refresh()
    else if (act === 'more') this.loadMore()
    else if (act === 'resolve') this.resolve(id)
    else if (act === 'action') this.runAction(id)
    else if (act === 'call-outcome') {
      button.closest('details')?.removeAttribute('open')
      this.logCall(id, button.dataset.outcome)
    }
    else if (act === 'snooze') this.snooze(id ? [id] : [...this.#state.selected], button.dataset.until)
    else if (act === 'resolve-selected') this.resolveSelected()
    else if (act === 'dismiss') this.#set({ notice: null })
  }

  #onChange(event) {
    const box = event.target
    if (box.dataset.do === 'select') {
      const id = box.closest('[data-id]').dataset.id
      box.checked ? this.#state.selected.add(id) : this.#state.selected.delete(id)
    } else if (box.dataset.do === 'select-all') {
      this.#state.selected = new Set(box.checked ? this.#state.alerts.map((a) => a.id) : [])
    } else return
    this.#render()
  }

  /** The one function that draws the state. */
  #render() {
    const root = this.shadowRoot
    if (!root) return
    const t = this.#t
    const s = this.#state
    const ref = (name) => root.querySelector(`[data-ref="${name}"]`)
    const focus = this.#focusToKeep()
    root.querySelector('#title').textContent = t.title
    const refresh = root.querySelector('[data-do="refresh"]')
    refresh.textContent = t.refresh
    refresh.setAttribute('aria-busy', String(s.refreshing))
    root.querySelector('section').setAttribute('aria-busy', String(s.status === 'loading'))

    const ready = s.status === 'ready' && s.stats
    ref('total').hidden = !ready
    ref('badges').hidden = !ready
    if (ready) {
      ref('total').textContent = t.total(s.stats.total)
      ref('total').dataset.count = s.stats.total
      ref('badges').innerHTML = SEVERITIES.map((sev) => {
        const n = s.stats.by_severity?.[sev] ?? 0
        return `<li class="badge ${sev}" data-severity="${sev}" data-count="${n}">${h(t.severityCount(t.severity[sev], n))}</li>`
      }).join('')
    }

    const notice = ref('notice')
    notice.innerHTML = s.notice
      ? `<div class="notice ${s.notice.kind}" data-kind="${s.notice.kind}"><p>${h(s.notice.text)}</p>
          <button type="button" data-do="dismiss" aria-label="${h(t.dismiss)}">×</button></div>`
      : ''

    ref('body').innerHTML = this.#renderBody(t, s)
    const checked = root.querySelector('[data-do="select-all"]')
    if (checked) checked.indeterminate = s.selected.size > 0 && s.selected.size < s.alerts.length
    ref('footer').textContent = s.updatedAt ? t.updated(s.updatedAt.toLocaleTimeString(this.lang)) : ''
    this.#restoreFocus(focus)
  }

  #renderBody(t, s) {
    if (s.status === 'loading') return `<div class="state loading" data-state="loading"><p>${h(t.loading)}</p></div>`
    if (s.status === 'error') {
      return `<div class="state error" data-state="error" role="alert">
        <p><strong>${h(t.loadFailed)}</strong></p><p class="detail">${h(s.error ? this.#why(s.error) : '')}</p>
        <button type="button" class="primary" data-do="retry" data-focus="retry">${h(t.retry)}</button></div>`
    }
    if (!s.alerts.length && !s.nextCursor) {
      return `<div class="state empty" data-state="empty"><p class="lead-in">${h(t.emptyTitle)}</p><p>${h(t.emptyBody)}</p></div>`
    }
    const { snooze, bulk } = s.features
    const bulkBar = bulk
      ? `<div class="bulk" data-ref="bulk">
          <label><input type="checkbox" data-do="select-all" data-focus="select-all" ${s.selected.size && s.selected.size === s.alerts.length ? 'checked' : ''}> ${h(t.selectAll)}</label>
          <span aria-live="polite">${h(t.selected(s.selected.size))}</span>
          <button type="button" data-do="resolve-selected" data-focus="resolve-selected" ${s.selected.size ? '' : 'disabled'}>${h(t.resolveSelected)}</button>
          ${snooze ? this.#snoozeMenu(t, t.snoozeSelected, 'snooze-selected', !s.selected.size) : ''}
        </div>`
      : ''
    const items = s.alerts.map((a) => this.#renderAlert(t, s, a)).join('')
    const more = s.nextCursor ? `<button type="button" class="more" data-do="more" data-focus="more">${h(t.more)}</button>` : ''
    return `<div data-state="list">${bulkBar}<ul class="alerts" aria-label="${h(t.list)}">${items}</ul>${more}</div>`
  }

  #renderAlert(t, s, a) {
    const lead = this.#leadName(a)
    const label = a.suggested_action?.label
    const acting = s.acting.has(a.id)
    const name = a.lead_url
      ? `<a class="crm" href="${h(a.lead_url)}" target="_blank" rel="noopener noreferrer" title="${h(t.openLead(lead))}">${h(lead)}</a>`
      : h(lead)
    const select = s.features.bulk
      ? `<span class="select"><input type="checkbox" data-do="select" data-focus="select:${h(a.id)}" aria-label="${h(t.select(lead))}" ${s.selected.has(a.id) ? 'checked' : ''}></span>`
      : ''
    return `<li class="alert sev-${h(a.severity)}" data-id="${h(a.id)}" data-severity="${h(a.severity)}">
      ${select}<div class="content">
      <div class="who"><strong class="lead">${name}</strong>${a.lead_email ? `<a class="email" href="mailto:${h(a.lead_email)}">${h(a.lead_email)}</a>` : ''}</div>
      <div class="meta"><span class="badge ${h(a.severity)}">${h(t.severity[a.severity] || a.severity)}</span>
        <span class="type">${h(a.type)}</span><time datetime="${h(a.created_at)}">${h(this.#ago(a.created_at))}</time></div>
      <p class="message">${h(a.message)}</p>
      ${label ? `<p class="suggested">${h(t.suggested)}<span class="colon">${h(t.colon)}</span><span class="action-label">${h(label)}</span></p>` : ''}
      ${label && a.suggested_action.available === false ? `<p class="unavailable" id="why-${h(a.id)}" data-reason="${h(a.suggested_action.reason)}">${h(t.unavailable(this.#why(a.suggested_action.reason || 'unknown_action')))}</p>` : ''}
      <div class="buttons">
        <button type="button" class="primary" data-do="resolve" data-focus="resolve:${h(a.id)}" aria-label="${h(t.forLead(t.resolve, lead))}">${h(t.resolve)}</button>
        ${label ? this.#actionControl(t, a, label, lead, acting) : ''}
        ${s.features.snooze ? this.#snoozeMenu(t, t.snooze, `snooze:${a.id}`, false, lead) : ''}
      </div></div></li>`
  }

  /** The Action button; disabled, saying why, when the action cannot run; for a call, the tel: link
   * and the outcome to log. (An API that does not say `available` is taken as able to run it.) */
  #actionControl(t, a, label, lead, acting) {
    const action = a.suggested_action
    const name = t.actionName(label, lead)
    if (action.available === false) {
      return `<button type="button" class="unrunnable" data-do="action" disabled aria-label="${h(name)}" aria-describedby="why-${h(a.id)}">${h(t.action)}</button>`
    }
    if (action.channel === 'call' && a.lead_phone) {
      const outcomes = Object.keys(CALL_STATUSES)
        .map((o) => `<button type="button" data-do="call-outcome" data-outcome="${o}" data-focus="outcome:${h(a.id)}:${o}">${h(t.outcomes[o])}</button>`)
        .join('')
      return `<a class="call" href="tel:${h(a.lead_phone)}" data-focus="call:${h(a.id)}" aria-label="${h(t.forLead(t.call(a.lead_phone), lead))}">${h(t.call(a.lead_phone))}</a>
        <details class="outcome"><summary data-focus="outcome:${h(a.id)}" aria-label="${h(t.outcomeFor(lead))}" aria-busy="${acting}">${h(t.outcome)}</summary><div class="menu">${outcomes}</div></details>`
    }
    return `<button type="button" data-do="action" data-focus="action:${h(a.id)}" aria-label="${h(name)}" aria-disabled="${acting}">${h(acting ? t.sending : t.action)}</button>`
  }

  #snoozeMenu(t, label, key, disabled, lead) {
    if (disabled) return `<button type="button" disabled>${h(label)}</button>`
    const name = lead ? t.forLead(label, lead) : label
    const choices = SNOOZES.map((c) => `<button type="button" data-do="snooze" data-until="${c}" data-focus="${h(key)}:${c}">${h(t.snoozeTo[c])}</button>`).join('')
    return `<details class="snooze"><summary data-focus="${h(key)}" aria-label="${h(name)}">${h(label)}</summary><div class="menu">${choices}</div></details>`
  }

  #ago(iso) {
    const seconds = (new Date(iso).getTime() - Date.now()) / 1000
    if (!Number.isFinite(seconds)) return ''
    const format = new Intl.RelativeTimeFormat(this.lang, { numeric: 'auto' })
    for (const [unit, size] of [['day', 86400], ['hour', 3600], ['minute', 60]]) {
      if (Math.abs(seconds) >= size) return format.format(Math.round(seconds / size), unit)
    }
    return format.format(0, 'minute')
  }

  /** Which control has the focus, so that a redraw gives it back (or to the next alert's same control). */
  #focusToKeep() {
    const active = this.shadowRoot.activeElement
    if (!active) return null
    const item = active.closest('li.alert')
    const items = [...this.shadowRoot.querySelectorAll('li.alert')]
    return { key: active.dataset?.focus, verb: active.dataset?.do || active.closest('[data-do]')?.dataset.do, index: item ? items.indexOf(item) : -1 }
  }

  #restoreFocus(focus) {
    if (!focus || this.shadowRoot.activeElement) return
    const root = this.shadowRoot
    let target = focus.key && root.querySelector(`[data-focus="${CSS.escape(focus.key)}"]`)
    if (!target && focus.index >= 0) {
      const items = [...root.querySelectorAll('li.alert')]
      const next = items[Math.min(focus.index, items.length - 1)]
      target = next?.querySelector(`[data-do="${focus.verb}"]`) || next?.querySelector('[data-do="resolve"]')
    }
    ;(target || root.querySelector('#title')).focus()
  }
}

LeadwatchAlertsElement.define()
