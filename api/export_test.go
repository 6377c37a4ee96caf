package api

// AsPrincipal lets the package's external tests name their caller (see
// asPrincipal); it exists only in tests.
var AsPrincipal = asPrincipal
