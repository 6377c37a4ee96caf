// Package auth says who is calling: it turns a request's credentials into a
// Principal (a role, a province, a subject, an actor id) and keeps it in the
// request's context. What each role may do is not decided here: the api
// package declares that in one table next to its routes (api/authz.go).
//
// Credentials, one kind per request (DESIGN.md §8b):
//   - residents and guardians: a server-side session, named by an HttpOnly
//     cookie, started by a passkey login, an OIDC login whose ID token
//     carries a verified document, or an operator's one-time enrolment code;
//   - province operators and the national auditor: an OIDC ID token from a
//     trusted identity provider, with role claims, as a bearer token, or a
//     session started by an OIDC login in a browser;
//   - machines (feeds, checkpoint devices, province signers and auditors at
//     the hub, hub members): an SM2-signed request token per request, from a
//     certificate in the federation's trust list, checked with a replay
//     cache.
//
// An Authenticator reads one kind; Chain tries several and refuses a request
// that carries two kinds at once, so that no request is read two ways.
package auth
