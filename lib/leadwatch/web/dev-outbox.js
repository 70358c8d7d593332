// <leadwatch-dev-outbox api-base="">: the dev page's panel of what `leadwatch dev` kept instead of
// sending (GET /dev/outbox: WhatsApp and email of tenants with no provider configured), newest first.
// Reloads after each action the alerts widget runs (leadwatch:action, leadwatch:call-logged) and on
// demand. Dev only: the deployed functions have no outbox, and the panel hides itself without one.

import { escapeHtml as h, languageOf } from './leadwatch-client.js'

const TEXTS = {
  fr: {
    title: "Boîte d'envoi (dev)",
    intro: "Ce que leadwatch aurait envoyé : sans fournisseur configuré, les envois de leadwatch dev s'arrêtent ici.",
    empty: 'Aucun message pour le moment. Cliquez sur Action sur une alerte.',
    refresh: 'Actualiser',
    refreshName: "Actualiser la boîte d'envoi",
    channel: { whatsapp: 'WhatsApp', email: 'E-mail' },
    to: 'À',
    failed: "Impossible de lire la boîte d'envoi.",
  },
  en: {
    title: 'Outbox (dev)',
    intro: 'What leadwatch would have sent: with no provider configured, leadwatch dev keeps its sends here.',
    empty: 'No message yet. Click Action on an alert.',
    refresh: 'Refresh',
    refreshName: 'Refresh the outbox',
    channel: { whatsapp: 'WhatsApp', email: 'Email' },
    to: 'To',
    failed: 'Could not read the outbox.',
  },
}

const STYLE = `
:host { display: block; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1f2937; }
[hidden] { display: none !important; }
.card { border: 1px solid #d1d5db; border-radius: 10px; background: #fff; padding: 16px; }
header { display: flex; align-items: center; gap: 8px; }
h2 { font-size: 1.15rem; margin: 0; flex: 1; }
button { font: inherit; cursor: pointer; border-radius: 6px; border: 1px solid #9ca3af; background: #fff; color: #1f2937; padding: 3px 10px; }
button:focus-visible { outline: 3px solid #2563eb; outline-offset: 2px; }
.intro, .empty { color: #4b5563; margin: 6px 0 0; }
ul { list-style: none; padding: 0; margin: 10px 0 0; display: grid; gap: 8px; }
li { border: 1px solid #e5e7eb; border-radius: 8px; padding: 8px 10px; }
.head { display: flex; gap: 8px; flex-wrap: wrap; align-items: baseline; color: #4b5563; font-size: 0.85rem; }
.channel { background: #dcfce7; color: #14532d; border-radius: 999px; padding: 0 8px; font-weight: 600; }
.channel.email { background: #dbeafe; color: #1e3a8a; }
.subject { font-weight: 600; margin: 4px 0 0; }
.text { margin: 4px 0 0; white-space: pre-wrap; }
`

export class LeadwatchDevOutboxElement extends HTMLElement {
  static define(tag = 'leadwatch-dev-outbox', registry = customElements) {
    if (!registry.get(tag)) registry.define(tag, this)
    return this
  }

  static get observedAttributes() {
    return ['api-base', 'lang']
  }

  #state = { status: 'loading', messages: [] } // loading | ready | absent | error
  #onSent = () => this.refresh()

  get apiBase() {
    return (this.getAttribute('api-base') || '').replace(/\/+$/, '')
  }
  set apiBase(value) {
    this.setAttribute('api-base', value)
  }
  get lang() {
    return languageOf(this, Object.keys(TEXTS))
  }
  set lang(value) {
    this.setAttribute('lang', value)
  }

  connectedCallback() {
    if (!this.shadowRoot) {
      const root = this.attachShadow({ mode: 'open' })
      root.innerHTML = `<style>${STYLE}</style><section class="card" aria-labelledby="title">
        <header><h2 id="title"></h2><button type="button" data-do="refresh"></button></header>
        <p class="intro"></p><div data-ref="body" aria-live="polite"></div></section>`
      root.querySelector('[data-do="refresh"]').addEventListener('click', () => this.refresh())
    }
    for (const type of ['leadwatch:action', 'leadwatch:call-logged']) document.addEventListener(type, this.#onSent)
    this.refresh()
  }

  disconnectedCallback() {
    for (const type of ['leadwatch:action', 'leadwatch:call-logged']) document.removeEventListener(type, this.#onSent)
  }

  attributeChangedCallback() {
    if (this.shadowRoot) this.#render()
  }

  async refresh() {
    try {
      const response = await fetch(`${this.apiBase}/dev/outbox`, { headers: { Accept: 'application/json' }, credentials: 'omit' })
      if (response.status === 404) {
        this.#state = { status: 'absent', messages: [] }
      } else {
        const body = await response.json()
        this.#state = response.ok ? { status: 'ready', messages: body.messages || [] } : { status: 'error', messages: [] }
      }
    } catch {
      this.#state = { status: 'error', messages: [] }
    }
    this.#render()
  }

  #render() {
    const root = this.shadowRoot
    const t = TEXTS[this.lang]
    this.hidden = this.#state.status === 'absent'
    root.querySelector('#title').textContent = t.title
    const refresh = root.querySelector('[data-do="refresh"]')
    refresh.textContent = t.refresh
    refresh.setAttribute('aria-label', t.refreshName)
    root.querySelector('.intro').textContent = t.intro
    const { status, messages } = this.#state
    const body = root.querySelector('[data-ref="body"]')
    if (status === 'error') body.innerHTML = `<p class="empty" data-state="error">${h(t.failed)}</p>`
    else if (!messages.length) body.innerHTML = `<p class="empty" data-state="empty">${h(t.empty)}</p>`
    else {
      body.innerHTML = `<ul data-state="list">${messages
        .map(
          (m) => `<li class="message" data-channel="${h(m.channel)}" data-id="${h(m.id)}">
            <div class="head"><span class="channel ${h(m.channel)}">${h(t.channel[m.channel] || m.channel)}</span>
              <span class="to">${h(t.to)} ${h(m.to)}</span><time datetime="${h(m.at)}">${h(new Date(m.at).toLocaleTimeString(this.lang))}</time></div>
            ${m.subject ? `<p class="subject">${h(m.subject)}</p>` : ''}<p class="text">${h(m.text)}</p></li>`,
        )
        .join('')}</ul>`
    }
  }
}

LeadwatchDevOutboxElement.define()
