// Package quota keeps one tenant of logd from starving the others:
// per-principal token buckets (golang.org/x/time/rate) for the bytes
// produced and consumed a second and the calls a second, a cap on a
// principal's open streams, and per-topic caps on bytes on disk.
//
// # The quota file
//
// JSON (see configs/quota.json). An empty file limits nothing; unknown
// keys are errors.
//
//	{
//	  "default": {
//	    "produce":  {"rate": 1048576, "burst": 4194304},
//	    "consume":  {"rate": 4194304, "burst": 8388608},
//	    "requests": {"rate": 200, "burst": 400},
//	    "streams":  16
//	  },
//	  "principals": {
//	    "alice": {"produce": {"rate": 65536, "burst": 131072}, "streams": 4},
//	    "root":  {"produce": {"rate": 0}, "requests": {"rate": 0}, "streams": 0}
//	  },
//	  "topics": {
//	    "alice/*": {"max_bytes": 104857600},
//	    "*":       {"max_bytes": 10737418240}
//	  }
//	}
//
// produce and consume are in bytes of record values a second, requests in
// calls a second; burst is the most taken at once (default: one second's
// worth), so a single request larger than the burst can never pass. A
// rate of 0 or streams 0 means no limit. "principals" override the
// default per client certificate CN, each of produce, consume, requests
// and streams as a whole: a key left out is inherited from "default".
// "topics" caps each topic's bytes on disk (store and index files, as the
// logd_topic_size_bytes gauge counts them); patterns match as the ACL's
// keyMatch does ("alice/*" is every topic under "alice/", "*" every topic)
// and the most specific one applies: an exact name, else the longest
// prefix. max_bytes 0 exempts topics from a broader pattern.
//
// # State
//
// A Quotas holds the Config in force and a bucket per principal, made on
// its first call. Set (a reload) swaps the Config in whole and updates
// the buckets in place, keeping their tokens, so a reload hands out no
// fresh bursts. Principals are certificate CNs, a set the CA bounds; still,
// buckets that are full and idle are dropped whenever the number of
// principals doubles, since a new bucket would behave the same.
//
// Every method of Quotas is safe for concurrent use; a nil *Quotas limits
// nothing. A Config is immutable once parsed.
package quota
