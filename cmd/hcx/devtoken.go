package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/auth"
	"github.com/hcxfed/hcx/certs"
	"github.com/hcxfed/hcx/devidp"
)

// runDevToken is `hcx dev token`: it logs a dev user in at the running
// `hcx dev`'s identity provider, through the real authorization code flow
// with PKCE, and prints the ID token, for curl:
//
//	TOKEN=$(hcx dev token --role operator --province 440000)
//	curl -H "Authorization: Bearer $TOKEN" ...
func runDevToken(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	flags := flag.NewFlagSet("hcx dev token", flag.ContinueOnError)
	flags.SetOutput(stderr)
	dir := flags.String("dir", "hcx-data", "data directory of the running hcx dev")
	role := flags.String("role", "", "operator, auditor, national or resident")
	province := flags.String("province", "", "the operator's province, such as 440000")
	user := flags.String("user", "", "a dev user's login name (residents: li-lei, han-meimei, wang-fang, zhao-qiang)")
	method := flags.String("method", "GET", "machines: the request's method")
	target := flags.String("url", "", "machines: the URL exactly as curl calls it")
	data := flags.String("data", "", "machines: the exact body curl sends (-d)")
	machine := flags.String("cert", "", "machines: sign as this dev certificate (feed-<code>, checkpoint-<code>, auditor, province-<code>)")
	flags.Usage = func() {
		fmt.Fprintln(flags.Output(), "Usage: hcx dev token --role operator --province 440000\n       hcx dev token --role auditor\n       hcx dev token --role national\n       hcx dev token --role resident --user li-lei\n       hcx dev token --role feed|checkpoint --province 440000 --method POST --url URL --data BODY\n       hcx dev token --cert auditor --url HUB/v1/entries\n\nPeople: logs a dev user in at hcx dev's identity provider (authorization code\nflow with PKCE) and prints the ID token, to send as 'Authorization: Bearer <token>'.\nMachines: signs one request (method, URL, body) with a dev certificate and\nprints the whole Authorization header value ('HCX-SM2 <token>'), good once.\n\nFlags:")
		flags.PrintDefaults()
	}
	if err := parseCmdFlags(flags, args, stdout); err != nil {
		return err
	}
	if flags.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q: see hcx dev token -h", flags.Arg(0))
	}
	if *machine != "" || *role == "feed" || *role == "checkpoint" {
		return devMachineToken(*dir, *machine, *role, hcx.ProvinceCode(*province), *method, *target, *data, stdout)
	}
	name, err := devTokenUser(*role, hcx.ProvinceCode(*province), *user)
	if err != nil {
		return err
	}
	st, err := devidp.ReadState(filepath.Join(*dir, "idp"))
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("no identity provider in %s: start hcx dev first (or give --dir)", *dir)
	}
	if err != nil {
		return err
	}
	var u *devidp.User
	for i := range st.Users {
		if st.Users[i].Name == name {
			u = &st.Users[i]
		}
	}
	if u == nil {
		return fmt.Errorf("no dev user %q in %s (see the users hcx dev printed)", name, *dir)
	}
	if *role != "" && u.Role != *role {
		return fmt.Errorf("dev user %s is a %s, not a %s", u.Name, u.Role, *role)
	}
	tok, err := devidp.FetchToken(ctx, nil, st.Issuer, u.Name, u.Password)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, tok)
	return nil
}

// devTokenUser picks the dev user for the flags.
func devTokenUser(role string, province hcx.ProvinceCode, user string) (string, error) {
	if user != "" {
		return user, nil
	}
	switch role {
	case "operator":
		if province == "" {
			return "", errors.New("--role operator needs --province, such as --province 440000")
		}
		if err := province.Validate(); err != nil {
			return "", fmt.Errorf("--province: %w", err)
		}
		return devidp.OperatorName(province), nil
	case "auditor":
		return devidp.AuditorName, nil
	case "national":
		return devidp.NationalName, nil
	case "resident":
		return "", errors.New("--role resident needs --user, such as --user li-lei")
	case "":
		return "", errors.New("give --role operator|auditor|national|resident (or --user NAME)")
	default:
		return "", fmt.Errorf("--role %q: the dev identity provider has operators, auditors, national platform staff and residents (%s)", role, strings.Join([]string{"operator", "auditor", "national", "resident"}, ", "))
	}
}

// devMachineToken signs one request as a dev machine certificate and prints
// the Authorization header value.
func devMachineToken(dir, name, role string, province hcx.ProvinceCode, method, target, data string, stdout io.Writer) error {
	if name == "" {
		if err := province.Validate(); err != nil {
			return fmt.Errorf("--role %s needs --province, such as --province 440000: %w", role, err)
		}
		name = role + "-" + string(province)
	}
	if target == "" {
		return errors.New("a machine signs each request: give --url (and --method, --data as curl sends them)")
	}
	ca, err := certs.OpenCA(filepath.Join(dir, "ca"))
	if err != nil {
		return fmt.Errorf("no dev CA in %s: start hcx dev first (or give --dir): %w", dir, err)
	}
	s, err := ca.LoadCurrent(name, time.Now())
	if err != nil {
		return fmt.Errorf("dev certificate %q: %w", name, err)
	}
	req, err := http.NewRequest(strings.ToUpper(method), target, nil)
	if err != nil {
		return fmt.Errorf("--url: %w", err)
	}
	if err := auth.SignRequest(req, []byte(data), s, time.Now()); err != nil {
		return err
	}
	fmt.Fprintln(stdout, req.Header.Get("Authorization"))
	return nil
}
