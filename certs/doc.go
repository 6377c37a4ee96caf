// Package certs holds the federation's keys and trust: SM2 keys and X.509
// certificates (through github.com/emmansun/gmsm), the national root CA, key
// ids, the SM2 JWS algorithm for jwx, the trust store that every verifier
// consults, SM3 hashing, SM4-GCM field encryption and HMAC-SM3 subject
// pseudonyms.
//
// It is the only package that imports an SM library; everyone else asks it.
package certs
