package client_test

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/logd/logd/api/client"
	logv1 "github.com/logd/logd/api/v1"
)

// exampleServer starts an in-process logd in a temporary directory and
// returns the Config of principal cn for it, and a function that stops it.
// Real code fills the Config from its flags instead.
func exampleServer(cn string) (client.Config, func()) {
	dir, err := os.MkdirTemp("", "logd-example-")
	if err != nil {
		panic(err)
	}
	srv, err := client.StartTestServer(dir, "")
	if err != nil {
		panic(err)
	}
	return srv.Config(cn), func() {
		if err := srv.Stop(); err != nil {
			panic(err)
		}
		os.RemoveAll(dir)
	}
}

func ExampleDial() {
	cfg, stop := exampleServer("alice")
	defer stop()

	// cfg names the server and the PEM files:
	//	client.Config{Addr: "localhost:8400", CAFile: "ca.pem",
	//		CertFile: "alice-client.pem", KeyFile: "alice-client-key.pem"}
	c, err := client.Dial(cfg)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()

	ctx := context.Background()
	off, err := c.Produce(ctx, "alice/greetings", []byte("hello"))
	if err != nil {
		fmt.Println(err)
		return
	}
	rec, err := c.Consume(ctx, "alice/greetings", off)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("offset %d: %s\n", rec.GetOffset(), rec.GetValue())
	// Output: offset 0: hello
}

func ExampleClient_Produce() {
	cfg, stop := exampleServer("alice")
	defer stop()
	c, err := client.Dial(cfg)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()

	ctx := context.Background()
	for _, v := range []string{"one", "two", "three"} {
		off, err := c.Produce(ctx, "alice/numbers", []byte(v))
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Printf("%s at offset %d\n", v, off)
	}
	lowest, next, err := c.Offsets(ctx, "alice/numbers")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("lowest %d, next %d\n", lowest, next)

	// alice may not write bob's topics.
	_, err = c.Produce(ctx, "bob/numbers", []byte("four"))
	fmt.Println(err != nil)
	// Output:
	// one at offset 0
	// two at offset 1
	// three at offset 2
	// lowest 0, next 3
	// true
}

func ExampleProducer() {
	cfg, stop := exampleServer("alice")
	defer stop()
	c, err := client.Dial(cfg)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()

	ctx := context.Background()
	// At most 16 records wait for their acknowledgement at once.
	p, err := c.NewProducer(ctx, "alice/events", 16)
	if err != nil {
		fmt.Println(err)
		return
	}
	var acks []*client.Ack
	for i := range 5 {
		a, err := p.Send(ctx, fmt.Appendf(nil, "event %d", i))
		if err != nil {
			fmt.Println(err)
			return
		}
		acks = append(acks, a)
	}
	for _, a := range acks {
		off, err := a.Wait(ctx)
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Println("acknowledged at offset", off)
	}
	if err := p.Close(); err != nil {
		fmt.Println(err)
	}
	// Output:
	// acknowledged at offset 0
	// acknowledged at offset 1
	// acknowledged at offset 2
	// acknowledged at offset 3
	// acknowledged at offset 4
}

func ExampleClient_Follow() {
	cfg, stop := exampleServer("alice")
	defer stop()
	c, err := client.Dial(cfg)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()

	ctx := context.Background()
	for _, v := range []string{"a", "b", "c", "d"} {
		if _, err := c.Produce(ctx, "alice/tail", []byte(v)); err != nil {
			fmt.Println(err)
			return
		}
	}
	// Follow waits at the end of the topic for new records; here fn stops
	// it at offset 3 by returning an error.
	errDone := errors.New("done")
	err = c.Follow(ctx, "alice/tail", 1, func(r *logv1.Record) error {
		fmt.Printf("%d: %s\n", r.GetOffset(), r.GetValue())
		if r.GetOffset() == 3 {
			return errDone
		}
		return nil
	})
	fmt.Println(err)
	// Output:
	// 1: b
	// 2: c
	// 3: d
	// done
}

func ExampleClient_ListTopics() {
	cfg, stop := exampleServer("alice")
	defer stop()
	c, err := client.Dial(cfg)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()

	ctx := context.Background()
	for _, topic := range []string{"alice/orders", "alice/orders", "alice/audit"} {
		if _, err := c.Produce(ctx, topic, []byte("x")); err != nil {
			fmt.Println(err)
			return
		}
	}
	// Only the topics alice may administer (action admin) are listed.
	topics, err := c.ListTopics(ctx, "")
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, t := range topics {
		fmt.Printf("%s: %d records\n", t.GetName(), t.GetRecords())
	}
	d, err := c.DeleteTopic(ctx, "alice/orders")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("deleted %s (%d records)\n", d.GetName(), d.GetRecords())
	// Output:
	// alice/audit: 1 records
	// alice/orders: 2 records
	// deleted alice/orders (2 records)
}
