package server

import (
	"context"
	"fmt"
	"io"
	"sync"
	"testing"

	"go.uber.org/zap"

	logv1 "github.com/logd/logd/api/v1"
	"github.com/logd/logd/internal/log"
)

// Produce rates over mutual TLS on 127.0.0.1, for 256-byte records, under
// each sync policy: unary with 1 and 16 callers, and one pipelined
// ProduceStream.
func BenchmarkProduce(b *testing.B) {
	value := make([]byte, 256)
	for _, policy := range []log.SyncPolicy{log.SyncAlways, log.SyncNone} {
		opt := func(c *Config, l *log.Config) {
			l.Sync = policy
			l.Logger = zap.NewNop()
			c.Logger = zap.NewNop()
		}
		for _, callers := range []int{1, 16} {
			b.Run(fmt.Sprintf("sync=%s/unary/callers=%d", policy, callers), func(b *testing.B) {
				ts := startServer(b, opt)
				c := client(b, ts, "root")
				req := &logv1.ProduceRequest{Topic: "bench", Record: &logv1.Record{Value: value}}
				ctx := context.Background()
				b.SetBytes(int64(len(value)))
				b.ReportAllocs()
				b.ResetTimer()
				var wg sync.WaitGroup
				per := (b.N + callers - 1) / callers
				for range callers {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for range per {
							if _, err := c.Produce(ctx, req); err != nil {
								b.Error(err)
								return
							}
						}
					}()
				}
				wg.Wait()
				b.ReportMetric(float64(per*callers)/b.Elapsed().Seconds(), "records/s")
			})
		}
		b.Run(fmt.Sprintf("sync=%s/stream", policy), func(b *testing.B) {
			ts := startServer(b, opt)
			c := client(b, ts, "root")
			stream, err := c.ProduceStream(context.Background())
			if err != nil {
				b.Fatal(err)
			}
			req := &logv1.ProduceRequest{Topic: "bench", Record: &logv1.Record{Value: value}}
			b.SetBytes(int64(len(value)))
			b.ReportAllocs()
			b.ResetTimer()
			errc := make(chan error, 1)
			go func() {
				for range b.N {
					if err := stream.Send(req); err != nil {
						errc <- err
						return
					}
				}
				errc <- stream.CloseSend()
			}()
			for range b.N {
				if _, err := stream.Recv(); err != nil {
					b.Fatal(err)
				}
			}
			if _, err := stream.Recv(); err != io.EOF {
				b.Fatalf("got %v, want EOF", err)
			}
			if err := <-errc; err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
		})
	}
}
