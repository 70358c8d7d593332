// The dev page's settings: ?tenant=...&lang=fr|en pick the tenant and the language of both elements.
const params = new URLSearchParams(location.search)
const form = document.getElementById('settings')
const tenant = params.get('tenant') || 'macrea'
const lang = params.get('lang') === 'en' ? 'en' : 'fr'
form.tenant.value = tenant
form.lang.value = lang
document.documentElement.lang = lang
for (const element of document.querySelectorAll('leadwatch-alerts, leadwatch-analytics')) {
  element.setAttribute('tenant', tenant)
}
