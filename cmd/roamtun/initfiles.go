package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/roamtun/roamtun/internal/serve"
	"github.com/roamtun/roamtun/internal/tomlfile"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/roamtun/roamtun/config"
	"github.com/roamtun/roamtun/internal/atomicfile"
)

// readConfigForInit reads the laptop's config (absent: empty) and refuses
// one that already has the profile, unless force. A config that does not
// parse is refused: init appends to it and then checks the whole.
func readConfigForInit(path, profile string, force bool) ([]byte, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	cfg, err := config.Parse(path, data)
	if err != nil {
		return nil, fmt.Errorf("the config does not parse; fix it first:\n%w", err)
	}
	if _, ok := cfg.Profiles[profile]; ok && !force {
		return nil, fmt.Errorf("%s has a [profile.%s] already: --force replaces it", path, profile)
	}
	return data, nil
}

// pinLine pins key for host:port, as ssh looks it up.
func pinLine(host string, port int, key ssh.PublicKey) string {
	return knownhosts.Line([]string{knownhosts.Normalize(net.JoinHostPort(host, strconv.Itoa(port)))}, key)
}

// checkExistingPin refuses a known_hosts that pins another key for addr
// (ssh would refuse the new one), unless force.
func checkExistingPin(path, addr string, key ssh.PublicKey, force bool) error {
	if _, err := os.Stat(path); err != nil {
		return nil
	}
	check, err := knownhosts.New(path)
	if err != nil {
		return fmt.Errorf("reading %s: %w", path, err)
	}
	err = check(addr, namedTCP(addr), key)
	var ke *knownhosts.KeyError
	if errors.As(err, &ke) && len(ke.Want) > 0 && !force {
		return fmt.Errorf("%s pins another key for %s (%s, line %d): remove it, or --force", path, addr,
			ssh.FingerprintSHA256(ke.Want[0].Key), ke.Want[0].Line)
	}
	return nil
}

type namedTCP string

func (a namedTCP) Network() string { return "tcp" }
func (a namedTCP) String() string  { return string(a) }

// laptopKey returns the public key line the server will authorize: the
// agent's first key, the existing identity's, or a new ed25519 key made
// here with x/crypto/ssh (file 0600, created exclusively).
func laptopKey(o initOptions, p initPaths) (pub string, made bool, err error) {
	if o.agent != "" {
		c, err := net.DialTimeout("unix", o.agent, 5*time.Second)
		if err != nil {
			return "", false, fmt.Errorf("--agent: %w", err)
		}
		defer c.Close()
		keys, err := agent.NewClient(c).List()
		if err != nil || len(keys) == 0 {
			return "", false, fmt.Errorf("--agent %s: no key (%v): ssh-add one", o.agent, err)
		}
		return canonical(keys[0].String())
	}
	if data, err := os.ReadFile(p.identity); err == nil {
		signer, err := ssh.ParsePrivateKey(data)
		if err != nil {
			return "", false, fmt.Errorf("%s: %w (a passphrase-protected key goes through --agent)", p.identity, err)
		}
		return canonical(strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey()))) + " roamtun-" + o.profile)
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", false, err
	}
	pk, sk, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", false, err
	}
	host, _ := os.Hostname()
	comment := "roamtun-" + o.profile + "@" + host
	block, err := ssh.MarshalPrivateKey(sk, comment)
	if err != nil {
		return "", false, err
	}
	f, err := os.OpenFile(p.identity, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", false, fmt.Errorf("making the key: %w", err)
	}
	_, err = f.Write(pem.EncodeToMemory(block))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", false, fmt.Errorf("making the key: %w", err)
	}
	spk, _ := ssh.NewPublicKey(pk)
	pub = strings.TrimSpace(string(ssh.MarshalAuthorizedKey(spk))) + " " + comment
	if err := os.WriteFile(p.identity+".pub", []byte(pub+"\n"), 0o644); err != nil {
		return "", false, err
	}
	pub, _, err = canonical(pub)
	return pub, true, err
}

func canonical(line string) (string, bool, error) {
	k, err := serve.ParsePubKey(line)
	return k, false, err
}

func keyFingerprint(pub string) string {
	fp, _ := serve.Fingerprint(pub)
	return fp
}

// writeLaptopFiles writes the laptop's half: the secrets (0600, two lines
// appended), the pin (known_hosts 0644) and the profile (appended to the
// config, whose other bytes stay as they were).
func writeLaptopFiles(o initOptions, p initPaths, cfgText []byte, pin string, l serve.LaptopSetup) error {
	secrets := fmt.Sprintf("%s %s \"%s\" *\n%s %s \"%s\" *\n", l.Name, l.RemoteName, l.Secrets.Client,
		l.RemoteName, l.Name, l.Secrets.Server)
	if err := appendFile(p.secrets, secrets, 0o600); err != nil {
		return err
	}
	if old, _ := os.ReadFile(p.knownHosts); !bytes.Contains(old, []byte(pin+"\n")) {
		if err := appendFile(p.knownHosts, pin+"\n", 0o644); err != nil {
			return err
		}
	}
	var t strings.Builder
	fmt.Fprintf(&t, "[profile.%s]\n# written by roamtun init %s: %s@%s, peer %s, server %s\n",
		o.profile, time.Now().UTC().Format(time.RFC3339), o.user, net.JoinHostPort(o.host, strconv.Itoa(o.port)), l.Peer, l.Local)
	kv := func(k, v string) { fmt.Fprintf(&t, "%-13s = %s\n", k, tomlfile.Quote(v)) }
	kv("host", o.host)
	fmt.Fprintf(&t, "%-13s = %d\n", "port", o.port)
	kv("user", l.User)
	if o.agent != "" {
		kv("agent_socket", o.agent)
	} else {
		kv("identity_file", p.identity)
	}
	kv("known_hosts", p.knownHosts)
	kv("name", l.Name)
	kv("remote_name", l.RemoteName)
	kv("secrets", p.secrets)
	text := cfgText
	if o.force {
		text = dropTable(text, "profile."+o.profile)
	}
	if len(text) > 0 && !bytes.HasSuffix(text, []byte("\n")) {
		text = append(text, '\n')
	}
	if len(text) > 0 {
		text = append(text, '\n')
	}
	mode := os.FileMode(0o644)
	if fi, err := os.Stat(p.config); err == nil {
		mode = fi.Mode().Perm()
	}
	if err := atomicfile.WriteFile(p.config, append(text, t.String()...), mode); err != nil {
		return fmt.Errorf("writing %s: %w", p.config, err)
	}
	return nil
}

// appendFile appends text to path, creating it with mode.
func appendFile(path, text string, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, mode)
	if err != nil {
		return err
	}
	_, err = f.WriteString(text)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// dropTable removes the table [name] (its header line up to the next
// header) from TOML text; everything else stays byte for byte.
func dropTable(text []byte, name string) []byte {
	lines := bytes.SplitAfter(text, []byte("\n"))
	var out []byte
	in := false
	for _, l := range lines {
		t := strings.TrimSpace(string(l))
		if strings.HasPrefix(t, "[") {
			h := strings.TrimSpace(strings.SplitN(t, "#", 2)[0])
			in = h == "["+name+"]"
		}
		if !in {
			out = append(out, l...)
		}
	}
	return out
}
