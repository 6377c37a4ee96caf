package certs

import (
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/emmansun/gmsm/smx509"
)

// WriteKey writes key as PKCS#8 PEM with permissions 0600. It never
// overwrites: an existing file is an error.
func WriteKey(path string, key *PrivateKey) error {
	der, err := smx509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("marshal key: %w", err)
	}
	return writeKeyPEM(path, der)
}

// writeKeyPEM writes a PKCS#8 key (DER) as PEM with permissions 0600, synced,
// never over an existing file.
func writeKeyPEM(path string, der []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("key %s already exists; refusing to overwrite a private key", path)
		}
		return err
	}
	if err := pem.Encode(f, &pem.Block{Type: "PRIVATE KEY", Bytes: der}); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// WriteCert writes a certificate as PEM.
func WriteCert(path string, der []byte) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

// readPEM reads the first PEM block of a file, which must be of type typ.
func readPEM(path, typ string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != typ {
		return nil, fmt.Errorf("%s: no %s PEM block", path, typ)
	}
	return blk.Bytes, nil
}

// ReadKey reads an SM2 private key written by WriteKey.
func ReadKey(path string) (*PrivateKey, error) {
	der, err := readPEM(path, "PRIVATE KEY")
	if err != nil {
		return nil, err
	}
	k, err := smx509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	sk, ok := k.(*PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s: not an SM2 key (%T)", path, k)
	}
	return sk, nil
}

// ReadCert reads a PEM certificate.
func ReadCert(path string) (*smx509.Certificate, error) {
	der, err := readPEM(path, "CERTIFICATE")
	if err != nil {
		return nil, err
	}
	c, err := smx509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// LoadSigner reads a certificate and its key.
func LoadSigner(certPath, keyPath string) (*Signer, error) {
	c, err := ReadCert(certPath)
	if err != nil {
		return nil, err
	}
	k, err := ReadKey(keyPath)
	if err != nil {
		return nil, err
	}
	s, err := signerFromDER(c.Raw, k)
	if err != nil {
		return nil, err
	}
	if !s.Public().Equal(c.PublicKey) {
		return nil, fmt.Errorf("%s does not hold the key of %s", keyPath, certPath)
	}
	return s, nil
}
