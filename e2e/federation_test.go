package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/auth"
	"github.com/hcxfed/hcx/certs"
	"github.com/hcxfed/hcx/devidp"
	"github.com/hcxfed/hcx/exchange"
)

// The provinces of docker-compose.yml: two write (lab results through the
// feed), two verify codes of the writers' residents.
var (
	writers   = []hcx.ProvinceCode{"440000", "110000"}
	verifiers = []hcx.ProvinceCode{"310000", "510000"}
	provinces = []hcx.ProvinceCode{"110000", "310000", "440000", "510000"}
)

// nodeURL is a province node's published API, as the host reaches it (its
// --public-url, which request tokens sign).
func nodeURL(p hcx.ProvinceCode) string { return endpoints["node-"+string(p)] }

// hubURL is a hub member's API under its compose host name (its
// -public-url, which request tokens sign); the test's dialer sends hub-N:7000
// to the member's published port.
func hubURL(member string) string { return "https://" + member + ":7000" }

// hostGateway is the docker0 bridge's address on this host: the identity
// provider and the TCP proxy listen there, so containers reach them and
// nothing binds a port on every interface.
func hostGateway(t *testing.T) string {
	ifc, err := net.InterfaceByName("docker0")
	if err != nil {
		t.Fatalf("no docker0 bridge here: %v", err)
	}
	addrs, err := ifc.Addrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil {
			return n.IP.String()
		}
	}
	t.Fatalf("docker0 has no IPv4 address: %v", addrs)
	return ""
}

// fed is the running compose federation as the load sees it: credentials
// made from the dev material, an operator token per province from the
// compose service idp, and clients.
type fed struct {
	t        *testing.T
	c        *compose
	hc       *http.Client // TLS verified against the dev TLS root; hub-N:7000 dialled at the published port
	gateway  string
	material string

	mu      sync.Mutex
	ops     map[hcx.ProvinceCode]string
	signers map[string]*certs.Signer // feed-P, checkpoint-P, province-P
	subKeys map[hcx.ProvinceCode]certs.SubjectKey
	ts      *certs.TrustStore
	rootDER []byte
}

// subnet is the compose network's, set by the override; movedIP is an
// address in it that dynamic allocation does not reach in a run.
const (
	subnet  = "10.213.14.0/24"
	movedIP = "10.213.14.250"
)

// writeOverride writes the compose override the suite runs with: the nodes
// in proxied reach every hub member through the TCP proxy on the gateway
// (extra_hosts), which forwards by TLS server name. The nodes trust the
// compose service idp, as docker-compose.yml says.
func writeOverride(t *testing.T, base, dir, gateway string, proxied []hcx.ProvinceCode) string {
	b, err := os.ReadFile(base)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Services map[string]struct {
			Command []string `yaml:"command"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("%s: %v", base, err)
	}
	services := map[string]any{}
	for _, p := range provinces {
		name := "node-" + string(p)
		svc, ok := doc.Services[name]
		if !ok || len(svc.Command) == 0 {
			t.Fatalf("%s has no service %s with a command", base, name)
		}
		for _, q := range proxied {
			if q == p {
				services[name] = map[string]any{"extra_hosts": []string{"hub-1:" + gateway, "hub-2:" + gateway, "hub-3:" + gateway}}
			}
		}
	}
	// A subnet of its own, so that a member can be moved to another
	// address (docker network connect --ip needs a configured subnet).
	networks := map[string]any{"hcx": map[string]any{"ipam": map[string]any{"config": []map[string]string{{"subnet": subnet}}}}}
	return writeCompose(t, filepath.Join(dir, "docker-compose.e2e.yml"), map[string]any{"version": "2.4", "services": services, "networks": networks})
}

// writeCompose writes a compose file holding v and answers its path.
func writeCompose(t *testing.T, path string, v any) string {
	b, err := yaml.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// newFed copies the material out of the init container and logs every
// province's operator in at the compose service idp (published on the
// host's loopback; its users' passwords are in the material's idp.json).
func newFed(t *testing.T, c *compose, gateway string) *fed {
	f := &fed{t: t, c: c, gateway: gateway, material: filepath.Join(t.TempDir(), "material"),
		ops: map[hcx.ProvinceCode]string{}, signers: map[string]*certs.Signer{}, subKeys: map[hcx.ProvinceCode]certs.SubjectKey{}}
	c.docker("cp", container("init")+":/material", f.material)
	f.hc = c.client
	idp, err := devidp.ReadState(filepath.Join(f.material, "idp"))
	if err != nil {
		t.Fatal(err)
	}
	ca, err := certs.OpenCA(filepath.Join(f.material, "ca"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range provinces {
		for _, role := range []string{"feed", "checkpoint", "province"} {
			s, err := ca.LoadCurrent(role+"-"+string(p), time.Now())
			if err != nil {
				t.Fatalf("dev certificate %s-%s: %v", role, p, err)
			}
			f.signers[role+"-"+string(p)] = s
		}
		var keys struct {
			SubjectKeyVersion int    `json:"subject_key_version"`
			SubjectKey        string `json:"subject_key"`
		}
		b, err := os.ReadFile(filepath.Join(f.material, "keys", string(p)+".json"))
		if err == nil {
			err = json.Unmarshal(b, &keys)
		}
		key, err2 := base64.StdEncoding.DecodeString(keys.SubjectKey)
		if err != nil || err2 != nil {
			t.Fatalf("keys of %s: %v %v", p, err, err2)
		}
		f.subKeys[p] = certs.SubjectKey{Version: keys.SubjectKeyVersion, Key: key}
		var pw string
		for _, u := range idp.Users {
			if u.Name == devidp.OperatorName(p) {
				pw = u.Password
			}
		}
		tok, err := devidp.FetchToken(context.Background(), nil, idp.Issuer, devidp.OperatorName(p), pw)
		if err != nil {
			t.Fatalf("operator of %s: %v", p, err)
		}
		f.ops[p] = tok
	}
	rootPEM, err := os.ReadFile(filepath.Join(f.material, "ca", "root.crt"))
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(rootPEM)
	if blk == nil {
		t.Fatal("root.crt holds no PEM block")
	}
	f.rootDER = blk.Bytes
	if f.ts, err = certs.NewTrustStoreDER(blk.Bytes); err != nil {
		t.Fatal(err)
	}
	trust, err := f.hub("province-310000").Trust(context.Background())
	if err != nil {
		t.Fatalf("trust list: %v", err)
	}
	if _, err := exchange.ApplyTrustList(f.ts, trust); err != nil {
		t.Fatalf("trust list: %v", err)
	}
	return f
}

// newClient is the suite's HTTP client: TLS 1.3 verified against the dev
// TLS root, no connection reuse (a fault must not hide behind a pooled
// connection), hub-N:7000 dialled at 127.0.0.1:700N.
func newClient(root *x509.Certificate, timeout time.Duration) *http.Client {
	pool := x509.NewCertPool()
	pool.AddCert(root)
	d := &net.Dialer{Timeout: 2 * time.Second}
	return &http.Client{Timeout: timeout, Transport: &http.Transport{DisableKeepAlives: true,
		TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: pool},
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if host, port, _ := net.SplitHostPort(addr); strings.HasPrefix(host, "hub-") && port == "7000" {
				addr = "127.0.0.1:700" + strings.TrimPrefix(host, "hub-")
			}
			return d.DialContext(ctx, network, addr)
		}}}
}

// hub is a client of every hub member signing with the named certificate.
func (f *fed) hub(signer string) *exchange.HubClient {
	var ms []string
	for _, h := range hubs {
		ms = append(ms, hubURL(h))
	}
	return exchange.NewHubClient(ms, f.hc).SignWith(f.signers[signer], nil)
}

// subject is the pseudonym province p's node gives a CN-ID number.
func (f *fed) subject(p hcx.ProvinceCode, doc string) hcx.Subject {
	return f.subKeys[p].Subject(hcx.DocCNID, doc)
}

// county is a division of each province (GB/T 2260) its people are born in.
var county = map[hcx.ProvinceCode]string{"110000": "110105", "310000": "310101", "440000": "440106", "510000": "510104"}

// docNumber is a valid CN-ID number of a person born in province p: i
// picks the birth date and sequence, run keeps reruns apart.
func docNumber(p hcx.ProvinceCode, run, i int) string {
	birth := time.Date(1940, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, i%20000)
	first17 := fmt.Sprintf("%s%s%03d", county[p], birth.Format("20060102"), (run+i/20000)%1000)
	return first17 + string(hcx.CNIDCheckDigit(first17))
}

// call sends one request and answers the status and body (at most 8 MiB);
// status 0 is a failure to get an answer.
func (f *fed) call(req *http.Request) (int, []byte) {
	resp, err := f.hc.Do(req)
	if err != nil {
		return 0, []byte(err.Error())
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	return resp.StatusCode, b
}

// asOperator sends a request as province p's operator, retrying 429 and
// failures to answer for up to limit.
func (f *fed) asOperator(p hcx.ProvinceCode, method, path, ctype string, body []byte, limit time.Duration) (int, []byte) {
	deadline := time.Now().Add(limit)
	for {
		req, _ := http.NewRequest(method, nodeURL(p)+path, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+f.ops[p])
		req.Header.Set(auth.HeaderReason, "e2e fault suite")
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		st, b := f.call(req)
		if (st == 0 || st == http.StatusTooManyRequests || st == http.StatusServiceUnavailable) && time.Now().Before(deadline) {
			time.Sleep(200 * time.Millisecond)
			continue
		}
		return st, b
	}
}

// signed posts body to province p's node with a request token of signer.
func (f *fed) signed(p hcx.ProvinceCode, path, ctype string, body []byte, signer string) (int, []byte) {
	req, _ := http.NewRequest(http.MethodPost, nodeURL(p)+path, bytes.NewReader(body))
	req.Header.Set("Content-Type", ctype)
	if err := auth.SignRequest(req, body, f.signers[signer], time.Now()); err != nil {
		return 0, []byte(err.Error())
	}
	return f.call(req)
}

// register registers n residents at province p in one operator feed and
// answers their document numbers; numbers from first on.
func (f *fed) register(p hcx.ProvinceCode, run, first, n int) []string {
	f.t.Helper()
	var body bytes.Buffer
	docs := make([]string, n)
	for i := range docs {
		docs[i] = docNumber(p, run, first+i)
		fmt.Fprintf(&body, `{"doc_type":"CN-ID","doc_number":"%s","name":"测试员"}`+"\n", docs[i])
	}
	st, b := f.asOperator(p, http.MethodPost, "/v1/feeds/residents", "application/x-ndjson", body.Bytes(), time.Minute)
	var res struct{ Accepted, Duplicates, Failed int }
	if st != http.StatusOK || json.Unmarshal(b, &res) != nil || res.Accepted+res.Duplicates != n {
		f.t.Fatalf("register %d residents at %s: %d %.300s", n, p, st, b)
	}
	return docs
}

// person is a resident enrolled with a session, whose codes the verifiers
// scan.
type person struct {
	home   hcx.ProvinceCode
	doc    string
	sub    hcx.Subject
	cookie []*http.Cookie
}

// enrol makes a resident at p through an operator's enrolment code and
// starts their session.
func (f *fed) enrol(p hcx.ProvinceCode, doc string) *person {
	f.t.Helper()
	body, _ := json.Marshal(map[string]string{"doc_type": "CN-ID", "doc_number": doc, "name": "测试员"})
	st, b := f.asOperator(p, http.MethodPost, "/v1/enrolments", "application/json", body, time.Minute)
	var e struct {
		Code    string      `json:"code"`
		Subject hcx.Subject `json:"subject"`
	}
	if st != http.StatusCreated || json.Unmarshal(b, &e) != nil {
		f.t.Fatalf("enrolment code at %s: %d %.300s", p, st, b)
	}
	jar, _ := cookiejar.New(nil)
	hc := *f.hc
	hc.Jar = jar
	body, _ = json.Marshal(map[string]string{"code": e.Code})
	for deadline := time.Now().Add(time.Minute); ; {
		resp, err := hc.Post(nodeURL(p)+"/v1/auth/enrol", "application/json", bytes.NewReader(body))
		if err == nil {
			rb, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
			if resp.StatusCode != http.StatusTooManyRequests || time.Now().After(deadline) {
				f.t.Fatalf("enrol at %s: %d %.300s", p, resp.StatusCode, rb)
			}
		} else if time.Now().After(deadline) {
			f.t.Fatalf("enrol at %s: %v", p, err)
		}
		time.Sleep(300 * time.Millisecond)
	}
	u, _ := url.Parse(nodeURL(p))
	return &person{home: p, doc: doc, sub: e.Subject, cookie: jar.Cookies(u)}
}

// code fetches the person's current code from their home node ("" if the
// node does not answer).
func (f *fed) code(r *person) string {
	req, _ := http.NewRequest(http.MethodGet, nodeURL(r.home)+"/v1/residents/"+string(r.sub)+"/code", nil)
	for _, c := range r.cookie {
		req.AddCookie(c)
	}
	st, b := f.call(req)
	var c struct {
		Code string `json:"code"`
	}
	if st != http.StatusOK || json.Unmarshal(b, &c) != nil {
		return ""
	}
	return c.Code
}

// verify scans code at province p's node with its checkpoint device: the
// colour it answers, or "" and why not.
func (f *fed) verify(p hcx.ProvinceCode, code string) (hcx.Colour, string) {
	body, _ := json.Marshal(map[string]string{"code": code})
	st, b := f.signed(p, "/v1/verify", "application/json", body, "checkpoint-"+string(p))
	var v exchange.Verification
	if st != http.StatusOK || json.Unmarshal(b, &v) != nil {
		return "", fmt.Sprintf("%d %.200s", st, b)
	}
	return v.Colour, ""
}

// ownColour is the colour province p's node holds for its resident sub,
// asked by its operator.
func (f *fed) ownColour(p hcx.ProvinceCode, sub hcx.Subject) (hcx.Colour, string) {
	st, b := f.asOperator(p, http.MethodGet, "/v1/residents/"+string(sub), "", nil, 10*time.Second)
	var r struct {
		Status struct {
			Colour hcx.Colour `json:"colour"`
		} `json:"status"`
	}
	if st != http.StatusOK || json.Unmarshal(b, &r) != nil {
		return "", fmt.Sprintf("%d %.200s", st, b)
	}
	return r.Status.Colour, ""
}

// nodeView is province p's view of the hub log, from the header of its
// offline bundle (read as its checkpoint device; the body is not
// downloaded): its tree size and root, and the hub checkpoint it verified,
// all checked by exchange.VerifyBundleHeader (signatures, and the node's
// tree consistent with that checkpoint). nil and why when it serves none.
func (f *fed) nodeView(p hcx.ProvinceCode) (*exchange.VerifiedBundle, string) {
	req, _ := http.NewRequest(http.MethodGet, nodeURL(p)+"/v1/verify/bundle", nil)
	if err := auth.SignRequest(req, nil, f.signers["checkpoint-"+string(p)], time.Now()); err != nil {
		return nil, err.Error()
	}
	resp, err := f.hc.Do(req)
	if err != nil {
		return nil, err.Error()
	}
	defer resp.Body.Close()
	line, err := bufio.NewReaderSize(io.LimitReader(resp.Body, exchange.MaxBundleHeaderBytes+1), 64<<10).ReadString('\n')
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Sprintf("%d %.200s", resp.StatusCode, line)
	}
	if err != nil {
		return nil, fmt.Sprintf("bundle header: %v", err)
	}
	vb, err := exchange.VerifyBundleHeader(f.rootDER, strings.TrimSuffix(line, "\n"))
	if err != nil {
		return nil, err.Error()
	}
	return vb, ""
}

// nodeGauges reads a node's /metrics counters (as its operator).
func (f *fed) nodeGauges(p hcx.ProvinceCode) map[string]int64 {
	st, b := f.asOperator(p, http.MethodGet, "/metrics", "", nil, 10*time.Second)
	if st != http.StatusOK {
		return nil
	}
	return parseGauges(string(b), "hcx_node_")
}
