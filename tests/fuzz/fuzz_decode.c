/*
 * libFuzzer target over the frame decoder: the input is a byte stream as a client would
 * send it, split into frames exactly as the server does (4-byte big-endian length, a size
 * limit), each frame decoded, and every item of a decoded `moves` or `adds` or props map walked.
 * Built by clang with -fsanitize=fuzzer,address,undefined; `make test` runs it for a
 * bounded time from the seed corpus in tests/fuzz/corpus.
 */
#include "proto/codec.h"

#include <stddef.h>
#include <stdint.h>

#define MAX_FRAME (64u << 10)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static sl_decoder *d;
    if (!d && !(d = sl_decoder_new()))
        return 0;
    size_t off = 0;
    while (size - off >= SL_PROTO_HEADER) {
        size_t len = sl_proto_body_len(data + off);
        if (len > MAX_FRAME || size - off - SL_PROTO_HEADER < len)
            break;
        sl_msg m;
        char err[256];
        const char *body = (const char *)data + off + SL_PROTO_HEADER;
        if (sl_decode(d, body, len, &m, err, sizeof err) == SL_DECODE_OK) {
            if (m.type == SL_MSG_MOVES) {
                for (uint32_t i = 0; i < m.n; i++) {
                    uint64_t e;
                    float x, y;
                    (void)sl_msg_move_at(&m, i, &e, &x, &y);
                }
            } else if (m.type == SL_MSG_ADDS) {
                for (uint32_t i = 0; i < m.n; i++) {
                    uint64_t e;
                    float x, y, r;
                    uint32_t layer, mask;
                    (void)sl_msg_add_at(&m, i, &e, &x, &y, &r, &layer, &mask);
                }
            } else if (m.type == SL_MSG_ADD || m.type == SL_MSG_PROPS) {
                for (uint32_t i = 0; i < m.n; i++) {
                    sl_str k;
                    sl_value v;
                    (void)sl_msg_prop_at(&m, i, &k, &v);
                }
            }
            /* Replies encode what was decoded: the encoder must cope with any of it. */
            sl_obuf out = {0};
            sl_enc_error(&out, m.has_rid, m.rid, "bad_value", err);
            sl_obuf_free(&out);
        }
        off += SL_PROTO_HEADER + len;
    }
    return 0;
}
