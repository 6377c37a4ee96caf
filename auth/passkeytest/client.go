package passkeytest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
)

// Client drives a province node's passkey routes (docs/api.md, "Residents'
// sessions and passkeys") with an Authenticator, as a resident's browser
// would: the way end-to-end tests log residents in.
type Client struct {
	HTTP *http.Client // default http.DefaultClient
	URL  string       // the node's base URL, such as "http://127.0.0.1:8441"
	Auth *Authenticator
}

// CookieName is the node's session cookie (auth.SessionCookie).
const CookieName = "hcx_session"

// Register registers a new passkey on the resident's session (a cookie of
// a session bound to their identity) and returns it.
func (c *Client) Register(session *http.Cookie, name string) (*Credential, error) {
	begin, err := c.post("/v1/auth/passkeys/register/begin", map[string]string{"name": name}, session, http.StatusOK)
	if err != nil {
		return nil, err
	}
	resp, cred, err := c.Auth.Create(begin.body)
	if err != nil {
		return nil, err
	}
	if _, err := c.post("/v1/auth/passkeys/register/finish", finishBody(begin.body, resp), session, http.StatusCreated); err != nil {
		return nil, err
	}
	return cred, nil
}

// Login logs in with cred (nil: the newest passkey for the node's RP ID)
// and returns the new session's cookie.
func (c *Client) Login(cred *Credential) (*http.Cookie, error) {
	begin, err := c.post("/v1/auth/passkeys/login/begin", nil, nil, http.StatusOK)
	if err != nil {
		return nil, err
	}
	resp, err := c.Auth.Get(begin.body, cred)
	if err != nil {
		return nil, err
	}
	fin, err := c.post("/v1/auth/passkeys/login/finish", finishBody(begin.body, resp), nil, http.StatusOK)
	if err != nil {
		return nil, err
	}
	for _, ck := range fin.cookies {
		if ck.Name == CookieName {
			return ck, nil
		}
	}
	return nil, fmt.Errorf("login answered without a %s cookie", CookieName)
}

// finishBody is {"ceremony": <begin's ceremony>, "credential": resp}.
func finishBody(begin, resp []byte) map[string]json.RawMessage {
	var b struct {
		Ceremony json.RawMessage `json:"ceremony"`
	}
	json.Unmarshal(begin, &b)
	return map[string]json.RawMessage{"ceremony": b.Ceremony, "credential": resp}
}

type reply struct {
	body    []byte
	cookies []*http.Cookie
}

func (c *Client) post(path string, body any, session *http.Cookie, want int) (*reply, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(http.MethodPost, c.URL+path, rd)
	if err != nil {
		return nil, err
	}
	if session != nil {
		req.AddCookie(session)
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != want {
		return nil, fmt.Errorf("POST %s: %d %s", path, resp.StatusCode, b)
	}
	return &reply{body: b, cookies: resp.Cookies()}, nil
}
