// What the leadwatch elements share: one way to call the public HTTP API (one error path) and the
// language of an element. No framework, no build step; an ES module any page can import.

/** An API call that did not answer 2xx: `status` is 0 when the server could not be reached. */
export class ApiError extends Error {
  constructor(status, code, message, details = null) {
    super(message)
    this.name = 'ApiError'
    this.status = status
    this.code = code
    this.details = details
  }
}

/**
 * Call `method path` on the API of `host` (an element with `apiBase`, `tenant` and an optional
 * `getToken`): JSON in and out. Open dev mode names the tenant with X-Tenant; deployed, the host page
 * sets `element.getToken = async () => accessToken` (the user's Supabase access token) and it goes as
 * the bearer. Never a service key: whatever `getToken` returns is sent to the browser's API origin.
 * Resolves to the JSON body of a 2xx; anything else rejects with an ApiError.
 */
export async function callApi(host, method, path, { body, signal } = {}) {
  const headers = { Accept: 'application/json' }
  if (host.tenant) headers['X-Tenant'] = host.tenant
  if (typeof host.getToken === 'function') {
    const token = await host.getToken()
    if (token) headers.Authorization = `Bearer ${token}`
  }
  if (body !== undefined) headers['Content-Type'] = 'application/json'
  let response
  try {
    response = await fetch(`${host.apiBase}${path}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
      credentials: 'omit',
    })
  } catch (error) {
    if (error.name === 'AbortError') throw error
    throw new ApiError(0, 'unreachable', error.message || 'network error')
  }
  let json = null
  try {
    json = await response.json()
  } catch {
    json = null
  }
  if (!response.ok || !json || json.success === false) {
    const error = (json && json.error) || {}
    throw new ApiError(response.status, error.code || `http_${response.status}`, error.message || response.statusText || `HTTP ${response.status}`, error.details || null)
  }
  return json
}

/** The paths the API describes in its OpenAPI document, or an empty set when it has none. */
export async function describedPaths(host) {
  try {
    const doc = await callApi(host, 'GET', '/openapi.json')
    return new Set(Object.keys(doc.paths || {}))
  } catch {
    return new Set()
  }
}

/** The element's language: its closest `lang` (itself included), when one of `supported`; else the first. */
export function languageOf(element, supported) {
  const lang = (element.closest('[lang]')?.getAttribute('lang') || '').toLowerCase().split('-')[0]
  return supported.includes(lang) ? lang : supported[0]
}

/** Text safe to put in HTML. */
export function escapeHtml(value) {
  return String(value ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c])
}
