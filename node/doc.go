// Package node is a province node: it holds the province's residents (identity
// encrypted at rest), ingests the events that decide colours, re-evaluates
// residents with the province's own rules, publishes colour attestations to
// the national hub through a durable outbox, follows the hub's log into a
// local cache of every province's attestations, issues health codes and
// verifies codes from any province with the national recognition rule.
//
// Everything acknowledged is in badger with synced writes before the call
// returns; the outbox is written in the same transaction as the event that
// caused it.
package node
