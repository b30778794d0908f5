# shellcheck shell=bash
# The benchmark issuer, with openssl only: an RSA-2048 signing key (PKCS#8),
# its public key as PEM (what HAProxy's jwt_verify reads), its JWKS (what
# simgate reads), and RS256 tokens. Both proxies are handed the very same
# token bytes.

b64url() { basenc --base64url -w0 | tr -d '='; }

# jwt_issuer DIR KID: writes DIR/signing-key.pem, DIR/public-key.pem and
# DIR/jwks.json.
jwt_issuer() {
    local dir=$1 kid=$2 n e
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$dir/signing-key.pem" 2>/dev/null
    openssl pkey -in "$dir/signing-key.pem" -pubout -out "$dir/public-key.pem"
    # Modulus as big-endian bytes; the exponent is openssl's default, 65537.
    n=$(openssl rsa -in "$dir/signing-key.pem" -noout -modulus 2>/dev/null | sed 's/^Modulus=//' | xxd -r -p | b64url)
    e=$(printf '%s' 010001 | xxd -r -p | b64url)
    printf '{"keys":[{"kty":"RSA","use":"sig","alg":"RS256","kid":"%s","n":"%s","e":"%s"}]}\n' \
        "$kid" "$n" "$e" >"$dir/jwks.json"
}

# jwt_token KEY KID CLAIMS_JSON: an RS256 compact JWT on stdout.
jwt_token() {
    local key=$1 kid=$2 claims=$3 head body sig
    head=$(printf '{"alg":"RS256","typ":"JWT","kid":"%s"}' "$kid" | b64url)
    body=$(printf '%s' "$claims" | b64url)
    sig=$(printf '%s.%s' "$head" "$body" | openssl dgst -sha256 -sign "$key" -binary | b64url)
    printf '%s.%s.%s\n' "$head" "$body" "$sig"
}
