"""The HTTP plumbing: the app that routes a request to its handler, what handlers read from a request,
who the caller is, CORS, and the OpenAPI description generated from the endpoints' declarations."""
