// Command wifihelper is what a Wi-Fi lab guest (lab.WifiGuest) lacks: a
// DHCP client and a checked, paced TCP stream. It runs inside the guest.
//
//	wifihelper dhcp IFACE                   # lease, then address + default route; prints the lease
//	wifihelper recv ADDR                    # accept one stream; prints "done BYTES SHA256" at its end
//	wifihelper send ADDR BYTES_PER_S STOPFILE
//	                                        # stream pseudo-random bytes at that pace until STOPFILE
//	                                        # exists; prints "sent N" each second, "done BYTES SHA256"
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/vishvananda/netlink"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch a := os.Args[2:]; os.Args[1] {
	case "dhcp":
		if len(a) != 1 {
			usage()
		}
		err = lease(a[0])
	case "recv":
		if len(a) != 1 {
			usage()
		}
		err = recv(a[0])
	case "send":
		if len(a) != 3 {
			usage()
		}
		rate, perr := strconv.Atoi(a[1])
		if perr != nil || rate <= 0 {
			usage()
		}
		err = send(a[0], rate, a[2])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "wifihelper:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: wifihelper dhcp IFACE | recv ADDR | send ADDR BYTES_PER_S STOPFILE")
	os.Exit(2)
}

// lease runs DISCOVER, OFFER, REQUEST, ACK on ifname and configures the
// address and the default route via the router, as a DHCP client does.
func lease(ifname string) error {
	c, err := nclient4.New(ifname, nclient4.WithTimeout(2*time.Second), nclient4.WithRetry(5))
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	l, err := c.Request(ctx)
	if err != nil {
		return fmt.Errorf("DHCP on %s: %w", ifname, err)
	}
	ack := l.ACK
	mask := ack.SubnetMask()
	if mask == nil {
		mask = net.CIDRMask(24, 32)
	}
	link, err := netlink.LinkByName(ifname)
	if err != nil {
		return err
	}
	addr := &net.IPNet{IP: ack.YourIPAddr, Mask: mask}
	if err := netlink.AddrReplace(link, &netlink.Addr{IPNet: addr}); err != nil {
		return fmt.Errorf("adding %s: %w", addr, err)
	}
	var gw net.IP
	if rs := ack.Router(); len(rs) > 0 {
		gw = rs[0]
		if err := netlink.RouteReplace(&netlink.Route{LinkIndex: link.Attrs().Index, Gw: gw,
			Dst: &net.IPNet{IP: net.IPv4zero, Mask: net.CIDRMask(0, 32)}}); err != nil {
			return fmt.Errorf("default via %s: %w", gw, err)
		}
	}
	fmt.Printf("lease %s router %s server %s dns %v\n", addr, gw, ack.ServerIdentifier(), ack.DNS())
	return nil
}

func recv(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	defer ln.Close()
	fmt.Println("listening")
	c, err := ln.Accept()
	if err != nil {
		return err
	}
	defer c.Close()
	h := sha256.New()
	n, err := io.Copy(h, c)
	if err != nil {
		return fmt.Errorf("after %d bytes: %w", n, err)
	}
	fmt.Printf("done %d %s\n", n, hex.EncodeToString(h.Sum(nil)))
	return nil
}

func send(addr string, rate int, stop string) error {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	h := sha256.New()
	src := rand.NewChaCha8([32]byte{7})
	const tick = 50 * time.Millisecond
	chunk := make([]byte, max(1, rate/int(time.Second/tick)))
	var sent int64
	last := time.Now()
	for {
		if _, err := os.Stat(stop); err == nil {
			break
		}
		src.Read(chunk)
		h.Write(chunk)
		if _, err := c.Write(chunk); err != nil {
			return fmt.Errorf("after %d bytes: %w", sent, err)
		}
		sent += int64(len(chunk))
		if time.Since(last) >= time.Second {
			fmt.Printf("sent %d\n", sent)
			last = time.Now()
		}
		time.Sleep(tick)
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		return err
	}
	// The receiver closes once it has everything.
	c.SetReadDeadline(time.Now().Add(60 * time.Second))
	if _, err := io.Copy(io.Discard, c); err != nil {
		return fmt.Errorf("waiting for the receiver: %w", err)
	}
	fmt.Printf("done %d %s\n", sent, hex.EncodeToString(h.Sum(nil)))
	return nil
}
