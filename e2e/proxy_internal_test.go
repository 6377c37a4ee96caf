package e2e

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"sync"
	"testing"
	"time"
)

// tlsEcho serves TLS as name on loopback: each line read is answered
// "name: line", and the time each connection's first line arrived is sent
// on arrivals.
func tlsEcho(t *testing.T, name string, arrivals chan<- string) (addr string, pool *x509.CertPool) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				sc := bufio.NewScanner(c)
				for first := true; sc.Scan(); first = false {
					if first && arrivals != nil {
						arrivals <- sc.Text()
					}
					fmt.Fprintf(c, "%s: %s\n", name, sc.Text())
				}
			}()
		}
	}()
	return ln.Addr().String(), pool
}

// The proxy routes each connection by its TLS server name, keeps TLS end
// to end, and, while disturbed, lets connections opened later overtake
// earlier ones.
func TestProxyRoutesByServerNameAndReordersAcrossConnections(t *testing.T) {
	arrivals := make(chan string, 64)
	a1, pool1 := tlsEcho(t, "hub-1", arrivals)
	a2, pool2 := tlsEcho(t, "hub-2", nil)
	px := startProxy(t, "127.0.0.1:0", func(name string, _ bool) (string, error) {
		return map[string]string{"hub-1": a1, "hub-2": a2}[name], nil
	})
	ask := func(name string, pool *x509.CertPool, line string) string {
		c, err := tls.Dial("tcp", px.ln.Addr().String(), &tls.Config{ServerName: name, RootCAs: pool})
		if err != nil {
			t.Fatalf("TLS to %s through the proxy: %v", name, err)
		}
		defer c.Close()
		fmt.Fprintln(c, line)
		got, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	if got, want := ask("hub-2", pool2, "x"), "hub-2: x\n"; got != want {
		t.Fatalf("through the proxy to hub-2: %q, want %q", got, want)
	}
	if got, want := ask("hub-1", pool1, "y"), "hub-1: y\n"; got != want {
		t.Fatalf("through the proxy to hub-1: %q, want %q", got, want)
	}
	<-arrivals
	px.disturb(300 * time.Millisecond)
	const n = 10
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			if got, want := ask("hub-1", pool1, fmt.Sprint(i)), fmt.Sprintf("hub-1: %d\n", i); got != want {
				t.Errorf("connection %d: %q, want %q", i, got, want)
			}
		}(i)
		time.Sleep(5 * time.Millisecond) // sent in order i = 0, 1, …
	}
	wg.Wait()
	close(arrivals)
	var order []string
	for a := range arrivals {
		order = append(order, a)
	}
	inOrder := true
	for i, a := range order {
		inOrder = inOrder && a == fmt.Sprint(i)
	}
	if inOrder {
		t.Errorf("%d connections sent 5 ms apart arrived in the order sent under a random delay of up to 300 ms a chunk: %v", n, order)
	}
	if px.chunks.Load() == 0 {
		t.Error("no chunk was delayed")
	}
}
