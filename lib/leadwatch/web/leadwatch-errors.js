// Why an API call failed, in the element's language: from the API's error code (`error.code`, the
// `reason` of an action that cannot run), never from the server's English message. One table per
// locale; a code not listed here is said generically, with the code itself for support.

const TEXTS = {
  fr: {
    unreachable: 'le serveur est injoignable',
    bad_request: 'la requête est invalide',
    unauthorized: 'vous devez vous reconnecter',
    forbidden: "vous n'avez pas accès à cette ressource",
    not_found: "l'élément n'existe plus",
    method_not_allowed: "cette opération n'est pas permise",
    request_timeout: 'la requête a expiré',
    conflict: "l'élément a changé entre-temps",
    payload_too_large: 'la requête est trop volumineuse',
    validation_failed: 'des champs sont invalides',
    database_unavailable: 'la base de données est indisponible, réessayez dans un instant',
    internal_error: 'erreur interne du serveur',
    // the reasons an action cannot run
    unknown_action: "leadwatch n'exécute pas cette action",
    no_preferred_channel: "le canal préféré du lead n'est pas connu",
    no_phone: "le lead n'a pas de numéro de téléphone",
    no_email: "le lead n'a pas d'adresse e-mail",
    no_message: "la règle de cette alerte n'a pas de message à envoyer",
    whatsapp_not_configured: "WhatsApp n'est pas configuré pour ce compte",
    email_not_configured: "l'envoi d'e-mails n'est pas configuré",
    action_is_a_call: 'un appel se passe au téléphone : appelez le lead puis indiquez le résultat',
    // Green-API
    whatsapp_unreachable: 'WhatsApp (Green-API) est injoignable',
    whatsapp_timeout: "WhatsApp (Green-API) n'a pas répondu à temps",
    whatsapp_rejected: "WhatsApp a refusé le message (instance non autorisée ou en démarrage)",
    whatsapp_token_rejected: "WhatsApp a refusé le jeton de l'instance",
    whatsapp_instance_rejected: "WhatsApp a refusé l'identifiant de l'instance",
    whatsapp_quota_exceeded: "le quota WhatsApp de l'instance est épuisé",
    whatsapp_rate_limited: 'WhatsApp limite les envois, réessayez plus tard',
    whatsapp_unavailable: 'WhatsApp est en panne, réessayez plus tard',
    whatsapp_bad_answer: 'WhatsApp a répondu sans identifiant de message',
    whatsapp_error: "WhatsApp a renvoyé une erreur",
    unknown: (code, status) => `erreur inattendue (${code}${status ? `, HTTP ${status}` : ''})`,
  },
  en: {
    unreachable: 'the server cannot be reached',
    bad_request: 'the request is invalid',
    unauthorized: 'please sign in again',
    forbidden: 'you do not have access to this',
    not_found: 'it no longer exists',
    method_not_allowed: 'this operation is not allowed',
    request_timeout: 'the request timed out',
    conflict: 'it changed in the meantime',
    payload_too_large: 'the request is too large',
    validation_failed: 'some fields are invalid',
    database_unavailable: 'the database is unavailable, try again in a moment',
    internal_error: 'internal server error',
    unknown_action: 'leadwatch does not run this action',
    no_preferred_channel: "the lead's preferred channel is not known",
    no_phone: 'the lead has no phone number',
    no_email: 'the lead has no email address',
    no_message: 'the rule of this alert has no message to send',
    whatsapp_not_configured: 'WhatsApp is not configured for this account',
    email_not_configured: 'email sending is not configured',
    action_is_a_call: 'a call happens on the phone: call the lead, then record the outcome',
    whatsapp_unreachable: 'WhatsApp (Green-API) cannot be reached',
    whatsapp_timeout: 'WhatsApp (Green-API) did not answer in time',
    whatsapp_rejected: 'WhatsApp refused the message (instance not authorised or starting)',
    whatsapp_token_rejected: "WhatsApp rejected the instance's token",
    whatsapp_instance_rejected: "WhatsApp rejected the instance's id",
    whatsapp_quota_exceeded: "the instance's WhatsApp quota is exhausted",
    whatsapp_rate_limited: 'WhatsApp is rate limiting sends, try again later',
    whatsapp_unavailable: 'WhatsApp is failing, try again later',
    whatsapp_bad_answer: 'WhatsApp answered without a message id',
    whatsapp_error: 'WhatsApp returned an error',
    unknown: (code, status) => `unexpected error (${code}${status ? `, HTTP ${status}` : ''})`,
  },
}

/** The languages this table speaks. */
export const ERROR_LANGUAGES = Object.keys(TEXTS)

/**
 * Why, in `lang`, for an ApiError (or any error with a `code` and `status`) or a bare code.
 * `http_<status>` codes (an answer that was not our JSON) are said by their status.
 */
export function errorText(error, lang) {
  const t = TEXTS[lang] || TEXTS.fr
  const code = typeof error === 'string' ? error : error?.code || 'internal_error'
  const status = typeof error === 'string' ? 0 : error?.status || 0
  const text = Object.hasOwn(t, code) && code !== 'unknown' ? t[code] : null
  if (typeof text === 'string') return text
  if (/^http_5\d\d$/.test(code)) return t.internal_error
  return t.unknown(code, status)
}
