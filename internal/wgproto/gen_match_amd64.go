//go:build ignore

// gen_match_amd64 writes match_amd64.s: mac1 checks of one initiation against
// many keys at once, one key per SIMD lane (16 lanes with AVX-512, 8 with AVX2).
// All lanes hash the same message, so each message word is broadcast to every
// lane; only the chaining state differs per lane. See match_amd64.go.
//
//	go generate ./internal/wgproto/
package main

import (
	"bytes"
	"fmt"
	"log"
	"os"
)

// sigma is the BLAKE2s message schedule (RFC 7693, section 2.7).
var sigma = [10][16]int{
	{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
	{14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3},
	{11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4},
	{7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8},
	{9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13},
	{2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9},
	{12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11},
	{13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10},
	{6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5},
	{10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0},
}

// halves lists the four G calls of each half round as columns of state words:
// a, b, c and d of the four columns, then of the four diagonals.
var halves = [2][4][4]int{
	{{0, 1, 2, 3}, {4, 5, 6, 7}, {8, 9, 10, 11}, {12, 13, 14, 15}},
	{{0, 1, 2, 3}, {5, 6, 7, 4}, {10, 11, 8, 9}, {15, 12, 13, 14}},
}

// The message: block 1 is words 0..15 of blk, block 2 words 16..31, of which
// the last three are always zero (mac1 covers 116 bytes = 29 words).
const (
	msgWords  = 29
	block2    = 16
	ctr1      = 128 // byte counter after block 1 (key block + 64 bytes)
	ctr2      = 180 // byte counter after block 2 (key block + 116 bytes)
	laneBytes = 64  // a state word of a 16-lane group: 16 uint32
	groupSize = 8 * laneBytes
)

// Offsets in the consts<> table (each a uint32).
const (
	cIV     = 0  // iv0..iv7
	cV12b1  = 32 // iv4 ^ ctr1
	cV12b2  = 36 // iv4 ^ ctr2
	cV14fin = 40 // ^iv6: iv6 with the final-block flag
)

var iv = [8]uint32{0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19}

var out bytes.Buffer

func p(format string, args ...any) { fmt.Fprintf(&out, format+"\n", args...) }

// isa emits the vector instructions of one instruction set.
type isa interface {
	reg(i int) string
	addMsg(word int, dst string) // dst += broadcast message word
	add(src, dst string)
	xor(src, dst string)
	rotr(n int, regs []string) // rotate each 32-bit lane right by n
}

// round emits one BLAKE2s round on the block starting at message word base, the
// four G calls of each half interleaved.
func round(x isa, s [16]int, base int) {
	for h, g := range halves {
		a, b, c, d := g[0], g[1], g[2], g[3]
		for k, rot := range [2][2]int{{16, 12}, {8, 7}} {
			for i := range 4 {
				x.add(x.reg(b[i]), x.reg(a[i]))
				if w := base + s[8*h+2*i+k]; w < msgWords {
					x.addMsg(w, x.reg(a[i]))
				}
			}
			var ds, bs []string
			for i := range 4 {
				x.xor(x.reg(a[i]), x.reg(d[i]))
				ds = append(ds, x.reg(d[i]))
			}
			x.rotr(rot[0], ds)
			for i := range 4 {
				x.add(x.reg(d[i]), x.reg(c[i]))
			}
			for i := range 4 {
				x.xor(x.reg(c[i]), x.reg(b[i]))
				bs = append(bs, x.reg(b[i]))
			}
			x.rotr(rot[1], bs)
		}
	}
}

// rounds emits the ten rounds on the block starting at message word base.
func rounds(x isa, base int) {
	for r, s := range sigma {
		p("\t// round %d", r)
		round(x, s, base)
	}
}

// avx512 keeps all sixteen state words in Z0..Z15, the block 1 result words 0..3
// in Z16..Z19, the expected mac1 in Z20..Z23 and constants in Z24..Z31.
type avx512 struct{}

func (avx512) reg(i int) string { return fmt.Sprintf("Z%d", i) }
func (avx512) addMsg(w int, dst string) {
	p("\tVPADDD.BCST %d(DX), %s, %s", 4*w, dst, dst)
}
func (avx512) add(src, dst string) { p("\tVPADDD %s, %s, %s", src, dst, dst) }
func (avx512) xor(src, dst string) { p("\tVPXORD %s, %s, %s", src, dst, dst) }
func (avx512) rotr(n int, regs []string) {
	for _, r := range regs {
		p("\tVPRORD $%d, %s, %s", n, r, r)
	}
}

func genAVX512() {
	x := avx512{}
	p("// func matchAVX512(groups *lanes16, n int, blk *[32]uint32, mac *[4]uint32) int")
	p("// Requires: AVX512F")
	p("TEXT ·matchAVX512(SB), NOSPLIT, $0-40")
	p("\tMOVQ groups+0(FP), SI")
	p("\tMOVQ n+8(FP), CX")
	p("\tMOVQ blk+16(FP), DX")
	p("\tMOVQ mac+24(FP), BX")
	p("\tXORQ R8, R8")
	p("\tTESTQ CX, CX")
	p("\tJLE avx512_none")
	for i := range 4 {
		p("\tVPBROADCASTD %d(BX), Z%d", 4*i, 20+i)
	}
	for i := range 8 {
		off := cIV + 4*i
		if i == 4 {
			off = cV12b1
		}
		p("\tVPBROADCASTD consts<>+%d(SB), Z%d", off, 24+i)
	}
	p("")
	p("avx512_loop:")
	p("\t// block 1: the state after the key block comes from the group")
	for i := range 8 {
		p("\tVMOVDQU32 %d(SI), Z%d", i*laneBytes, i)
	}
	for i := range 8 {
		p("\tVMOVDQA32 Z%d, Z%d", 24+i, 8+i)
	}
	rounds(x, 0)
	p("\t// h = h ^ v[0:8] ^ v[8:16]; keep words 0..3 for the end")
	for i := range 8 {
		p("\tVPTERNLOGD $0x96, %d(SI), Z%d, Z%d", i*laneBytes, 8+i, i)
	}
	for i := range 4 {
		p("\tVMOVDQA32 Z%d, Z%d", i, 16+i)
	}
	p("\t// block 2: the final block")
	for i := range 4 {
		p("\tVMOVDQA32 Z%d, Z%d", 24+i, 8+i)
	}
	p("\tVPBROADCASTD consts<>+%d(SB), Z12", cV12b2)
	p("\tVMOVDQA32 Z29, Z13")
	p("\tVPBROADCASTD consts<>+%d(SB), Z14", cV14fin)
	p("\tVMOVDQA32 Z31, Z15")
	rounds(x, block2)
	p("\t// mac1 = h[0:4] ^ v[0:4] ^ v[8:12]; a lane matches if it equals the message's")
	for i := range 4 {
		p("\tVPTERNLOGD $0x96, Z%d, Z%d, Z%d", 16+i, 8+i, i)
		p("\tVPXORD Z%d, Z%d, Z%d", 20+i, i, i)
	}
	p("\tVPTERNLOGD $0xfe, Z2, Z1, Z0")
	p("\tVPORD Z3, Z0, Z0")
	p("\tVPTESTNMD Z0, Z0, K1")
	p("\tKMOVW K1, AX")
	p("\tTESTL AX, AX")
	p("\tJNZ avx512_found")
	p("\tADDQ $%d, SI", groupSize)
	p("\tADDQ $16, R8")
	p("\tDECQ CX")
	p("\tJNZ avx512_loop")
	p("")
	p("avx512_none:")
	p("\tVZEROUPPER")
	p("\tMOVQ $-1, ret+32(FP)")
	p("\tRET")
	p("")
	p("avx512_found:")
	p("\tVZEROUPPER")
	p("\tBSFL AX, AX")
	p("\tADDQ R8, AX")
	p("\tMOVQ AX, ret+32(FP)")
	p("\tRET")
}

// Stack frame of matchAVX2: the broadcast message words, block 1's result words
// 0..3, the broadcast expected mac1 and a spill slot, 32 bytes each.
const (
	fMsg   = 0
	fH1    = fMsg + 32*msgWords
	fMAC   = fH1 + 32*4
	fSpill = fMAC + 32*4
	fSize  = fSpill + 32
)

// avx2 keeps all sixteen state words in Y0..Y15 and everything else on the
// stack. AVX2 has no rotate: 16 and 8 are byte shuffles, 12 and 7 take two shifts
// and an OR through a temporary, for which Y8 is spilled.
type avx2 struct{}

func (avx2) reg(i int) string { return fmt.Sprintf("Y%d", i) }
func (avx2) addMsg(w int, dst string) {
	p("\tVPADDD %d(SP), %s, %s", fMsg+32*w, dst, dst)
}
func (avx2) add(src, dst string) { p("\tVPADDD %s, %s, %s", src, dst, dst) }
func (avx2) xor(src, dst string) { p("\tVPXOR %s, %s, %s", src, dst, dst) }
func (avx2) rotr(n int, regs []string) {
	switch n {
	case 16, 8:
		for _, r := range regs {
			p("\tVPSHUFB rot%d<>(SB), %s, %s", n, r, r)
		}
		return
	}
	p("\tVMOVDQU Y8, %d(SP)", fSpill)
	for _, r := range regs {
		p("\tVPSRLD $%d, %s, Y8", n, r)
		p("\tVPSLLD $%d, %s, %s", 32-n, r, r)
		p("\tVPOR Y8, %s, %s", r, r)
	}
	p("\tVMOVDQU %d(SP), Y8", fSpill)
}

func genAVX2() {
	x := avx2{}
	p("// func matchAVX2(groups *lanes16, n int, blk *[32]uint32, mac *[4]uint32) int")
	p("// n counts halves of groups (8 lanes each), not groups.")
	p("// Requires: AVX, AVX2")
	p("TEXT ·matchAVX2(SB), 0, $%d-40", fSize)
	p("\tMOVQ groups+0(FP), SI")
	p("\tMOVQ n+8(FP), CX")
	p("\tMOVQ blk+16(FP), DX")
	p("\tMOVQ mac+24(FP), BX")
	p("\tXORQ R8, R8")
	p("\tTESTQ CX, CX")
	p("\tJLE avx2_none")
	for w := range msgWords {
		p("\tVPBROADCASTD %d(DX), Y0", 4*w)
		p("\tVMOVDQU Y0, %d(SP)", fMsg+32*w)
	}
	for i := range 4 {
		p("\tVPBROADCASTD %d(BX), Y0", 4*i)
		p("\tVMOVDQU Y0, %d(SP)", fMAC+32*i)
	}
	p("")
	p("avx2_loop:")
	p("\t// block 1: the state after the key block comes from the group")
	for i := range 8 {
		p("\tVMOVDQU %d(SI), Y%d", i*laneBytes, i)
	}
	for i := range 8 {
		off := cIV + 4*i
		if i == 4 {
			off = cV12b1
		}
		p("\tVPBROADCASTD consts<>+%d(SB), Y%d", off, 8+i)
	}
	rounds(x, 0)
	p("\t// h = h ^ v[0:8] ^ v[8:16]; keep words 0..3 for the end")
	for i := range 8 {
		p("\tVPXOR Y%d, Y%d, Y%d", 8+i, i, i)
		p("\tVPXOR %d(SI), Y%d, Y%d", i*laneBytes, i, i)
	}
	for i := range 4 {
		p("\tVMOVDQU Y%d, %d(SP)", i, fH1+32*i)
	}
	p("\t// block 2: the final block")
	for i := range 8 {
		off := cIV + 4*i
		switch i {
		case 4:
			off = cV12b2
		case 6:
			off = cV14fin
		}
		p("\tVPBROADCASTD consts<>+%d(SB), Y%d", off, 8+i)
	}
	rounds(x, block2)
	p("\t// mac1 = h[0:4] ^ v[0:4] ^ v[8:12]; a lane matches if it equals the message's")
	for i := range 4 {
		p("\tVPXOR Y%d, Y%d, Y%d", 8+i, i, i)
		p("\tVPXOR %d(SP), Y%d, Y%d", fH1+32*i, i, i)
		p("\tVPXOR %d(SP), Y%d, Y%d", fMAC+32*i, i, i)
	}
	p("\tVPOR Y1, Y0, Y0")
	p("\tVPOR Y3, Y2, Y2")
	p("\tVPOR Y2, Y0, Y0")
	p("\tVPXOR Y1, Y1, Y1")
	p("\tVPCMPEQD Y1, Y0, Y0")
	p("\tVMOVMSKPS Y0, AX")
	p("\tTESTL AX, AX")
	p("\tJNZ avx2_found")
	p("\t// next half: the other 8 lanes of this group, or the first 8 of the next")
	p("\tADDQ $8, R8")
	p("\tLEAQ 32(SI), SI")
	p("\tTESTQ $8, R8")
	p("\tJNZ avx2_next")
	p("\tADDQ $%d, SI", groupSize-2*32)
	p("avx2_next:")
	p("\tDECQ CX")
	p("\tJNZ avx2_loop")
	p("")
	p("avx2_none:")
	p("\tVZEROUPPER")
	p("\tMOVQ $-1, ret+32(FP)")
	p("\tRET")
	p("")
	p("avx2_found:")
	p("\tVZEROUPPER")
	p("\tBSFL AX, AX")
	p("\tADDQ R8, AX")
	p("\tMOVQ AX, ret+32(FP)")
	p("\tRET")
}

func genData() {
	consts := append(iv[:], iv[4]^ctr1, iv[4]^ctr2, ^iv[6])
	for i, c := range consts {
		p("DATA consts<>+%d(SB)/4, $0x%08x", 4*i, c)
	}
	p("GLOBL consts<>(SB), RODATA|NOPTR, $%d", 4*len(consts))
	p("")
	// VPSHUFB masks rotating each 32-bit lane right by 16 and by 8 bits.
	for _, m := range []struct {
		name string
		perm [4]int
	}{{"rot16", [4]int{2, 3, 0, 1}}, {"rot8", [4]int{1, 2, 3, 0}}} {
		for q := range 4 {
			var v uint64
			for j := 7; j >= 0; j-- {
				dw := (q*8 + j) / 4 % 4
				v = v<<8 | uint64(4*dw+m.perm[j%4])
			}
			p("DATA %s<>+%d(SB)/8, $0x%016x", m.name, 8*q, v)
		}
		p("GLOBL %s<>(SB), RODATA|NOPTR, $32", m.name)
		p("")
	}
}

func main() {
	p("// Code generated by gen_match_amd64.go; DO NOT EDIT.")
	p("")
	p("//go:build amd64 && gc && !purego")
	p("")
	p(`#include "textflag.h"`)
	p("")
	genData()
	genAVX512()
	p("")
	genAVX2()
	if err := os.WriteFile("match_amd64.s", out.Bytes(), 0o644); err != nil {
		log.Fatal(err)
	}
}
