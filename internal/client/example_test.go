package client_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"net/url"
	"time"

	"github.com/enrollq/enrollq/internal/client"
	"github.com/enrollq/enrollq/internal/sandbox"
)

func ExampleClient_Create() {
	// The sandbox stands in for the API; in production BaseURL is left at
	// its default.
	sb, err := sandbox.New(sandbox.Config{TTL: time.Hour})
	if err != nil {
		fmt.Println(err)
		return
	}
	srv := httptest.NewServer(sb)
	defer srv.Close()

	c, err := client.New(client.Config{
		APIKey:  "sk-ant-example",
		BaseURL: srv.URL,
		Timeout: 10 * time.Second,
	})
	if err != nil {
		fmt.Println(err)
		return
	}

	link, err := c.Create(context.Background(), "uprof_01Example")
	if err != nil {
		// Every failure is a *client.Error that says whether to try again.
		fmt.Println(err)
		return
	}

	// The link prints redacted; Reveal is for the one place that stores it.
	u, err := url.Parse(link.URL.Reveal())
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("printed as:", link.URL)
	fmt.Println("scheme:", u.Scheme)
	fmt.Println("expires within two hours:", time.Until(link.ExpiresAt) < 2*time.Hour)
	// Output:
	// printed as: [redacted]
	// scheme: https
	// expires within two hours: true
}
