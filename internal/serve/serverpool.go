package serve

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/roamtun/roamtun/internal/atomicfile"
	"github.com/roamtun/roamtun/internal/safefile"
	"golang.org/x/crypto/ssh"
	"golang.org/x/sys/unix"
)

// DefaultPoolFile is where `server-setup --apply` keeps the laptops it set
// up. It lives in /etc (not /var/lib) because it belongs with the
// authorized_keys line and the secrets it describes: a copy of /etc holds
// the whole server setup.
const DefaultPoolFile = "/etc/roamtun/server-pool.json"

// PoolEntry is one laptop set up on this server.
type PoolEntry struct {
	Fingerprint string     `json:"fingerprint"` // SHA256:… of the laptop's key
	Key         string     `json:"key"`         // its canonical public key line
	Peer        netip.Addr `json:"peer"`        // the laptop's address on the link
	Local       netip.Addr `json:"local"`       // the server's
	User        string     `json:"user"`        // the link account
	FarEnd      string     `json:"far_end"`
	ClientName  string     `json:"name"`        // the laptop's CHAP name
	ServerName  string     `json:"remote_name"` // the server's
	Secrets     string     `json:"secrets"`     // the chap-secrets file the lines went to
	PeersFile   string     `json:"peers_file,omitempty"`
	Added       time.Time  `json:"added"`
}

// Comment is the key's comment (usually who and where it was made).
func (e PoolEntry) Comment() string {
	if _, c, _, _, err := ssh.ParseAuthorizedKey([]byte(e.Key)); err == nil {
		return c
	}
	return ""
}

// Pool is the server's address pool: one peer address per laptop key,
// kept in a JSON file (root, 0600) and locked (flock on FILE.lock) from
// OpenPool to Close, so that two setups at once cannot hand out the same
// address or interleave their secrets.
type Pool struct {
	Path    string
	Laptops []PoolEntry
	lock    *os.File
}

type poolFile struct {
	Laptops []PoolEntry `json:"laptops"`
}

// OpenPool locks and reads the pool at path (an absent file is an empty
// pool). The file is believed only if it is root's and private.
func OpenPool(path string) (*Pool, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("address pool: %w", err)
	}
	lock, err := os.OpenFile(path+".lock", os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("address pool: locking: %w", err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		lock.Close()
		return nil, fmt.Errorf("address pool: locking %s: %w", lock.Name(), err)
	}
	p := &Pool{Path: path, lock: lock}
	data, err := safefile.ReadOwned(path, 16<<20)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return p, nil
	case err != nil:
		p.Close()
		return nil, fmt.Errorf("address pool %s: %w", path, err)
	}
	var f poolFile
	if err := json.Unmarshal(data, &f); err != nil {
		p.Close()
		return nil, fmt.Errorf("address pool %s: %w", path, err)
	}
	p.Laptops = f.Laptops
	return p, nil
}

// Close releases the lock.
func (p *Pool) Close() error {
	if p == nil || p.lock == nil {
		return nil
	}
	err := p.lock.Close()
	p.lock = nil
	return err
}

// Save writes the pool (atomically, root 0600).
func (p *Pool) Save() error {
	data, err := json.MarshalIndent(poolFile{Laptops: p.Laptops}, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(p.Path, append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("address pool: writing %s: %w", p.Path, err)
	}
	return nil
}

// Find returns the index of the laptop named by a fingerprint
// ("SHA256:…") or a public key line, or -1.
func (p *Pool) Find(keyOrFingerprint string) int {
	fp := keyOrFingerprint
	if !strings.HasPrefix(fp, "SHA256:") {
		k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(keyOrFingerprint))
		if err != nil {
			return -1
		}
		fp = ssh.FingerprintSHA256(k)
	}
	for i, e := range p.Laptops {
		if e.Fingerprint == fp {
			return i
		}
	}
	return -1
}

// Allocate returns a peer address for a new laptop: want if it is set and
// free, else the lowest free address of local's /24 (not local, not the
// network or broadcast address).
func (p *Pool) Allocate(local, want netip.Addr) (netip.Addr, error) {
	used := map[netip.Addr]string{local: "the server"}
	for _, e := range p.Laptops {
		used[e.Peer] = e.Fingerprint
		used[e.Local] = "the server"
	}
	if want.IsValid() {
		if who, ok := used[want]; ok {
			return netip.Addr{}, fmt.Errorf("address pool: %s is taken (by %s)", want, who)
		}
		return want, nil
	}
	if !local.Is4() {
		return netip.Addr{}, fmt.Errorf("address pool: the server's address %s is not IPv4", local)
	}
	pfx := netip.PrefixFrom(local, 24).Masked()
	for a := pfx.Addr().Next(); pfx.Contains(a); a = a.Next() {
		if a.As4()[3] == 255 {
			break
		}
		if _, ok := used[a]; !ok {
			return a, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("address pool: no free address left in %s", pfx)
}

// KeyID is a short name for a laptop key, usable in CHAP names and file
// names: the first 12 hex digits of the SHA-256 of the key.
func KeyID(pubKey string) (string, error) {
	k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(pubKey))
	if err != nil {
		return "", fmt.Errorf("the laptop's public key: %w", err)
	}
	sum := sha256.Sum256(k.Marshal())
	return hex.EncodeToString(sum[:6]), nil
}

// Fingerprint is the key's SHA256:… fingerprint, as ssh-keygen -l prints it.
func Fingerprint(pubKey string) (string, error) {
	k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(pubKey))
	if err != nil {
		return "", fmt.Errorf("the public key: %w", err)
	}
	return ssh.FingerprintSHA256(k), nil
}
