<?php

/**
 * RakitWebSocket: the PHP side of rakit-websocket, in one file (PHP 8.1+, no Composer, no curl).
 *
 *  - Session tokens (SPEC section 4): HS256 JWTs with the claims `rakit websocket:token` writes
 *    (sub, name, email?, admin?, exp), and the session cookie that carries them.
 *  - Channel tokens (SPEC section 15): `channelToken()`, for channels only the right user or
 *    connection may read (claims channel, sub or client, exp).
 *  - The backend HTTP API (SPEC section 8): commands, channels and presence, over PHP's own
 *    http:// stream wrapper (https:// too when the openssl extension is loaded).
 *
 *     require 'RakitWebSocket.php';
 *     $ws = new RakitWebSocket('http://127.0.0.1:6001', apiKey: getenv('RAKIT_API_KEY'));
 *     $ws->toChannel('orders', ['id' => 42, 'status' => 'shipped']);
 *
 * Every API failure throws RakitWebSocketException with the API's error code
 * (`$e->errorCode`, e.g. "unknown_client") and the HTTP status (`$e->status`).
 */

declare(strict_types=1);

/** An API call that failed: the daemon's error code and HTTP status (0 when it was not reached). */
final class RakitWebSocketException extends RuntimeException
{
    public function __construct(
        string $message,
        public readonly string $errorCode,
        public readonly int $status = 0,
        ?Throwable $previous = null,
    ) {
        parent::__construct($message, $status, $previous);
    }
}

final class RakitWebSocket
{
    private const JSON_FLAGS = JSON_THROW_ON_ERROR | JSON_UNESCAPED_SLASHES
        | JSON_UNESCAPED_UNICODE | JSON_PRESERVE_ZERO_FRACTION;

    /**
     * @param string $url           the daemon's base URL, e.g. http://127.0.0.1:6001
     * @param string $apiKey        `[api] key` of the daemon
     * @param string $sessionSecret `[session] secret` of the daemon (for tokens)
     * @param string $cookieName    `[session] cookie` of the daemon
     * @param float  $timeout       seconds per API call
     */
    public function __construct(
        private readonly string $url = 'http://127.0.0.1:6001',
        private readonly string $apiKey = '',
        private readonly string $sessionSecret = '',
        private readonly string $cookieName = 'rakit_ws_session',
        private readonly float $timeout = 5.0,
    ) {
    }

    // ---- Session tokens -------------------------------------------------------------------

    /** A session token for a user, valid for `$ttl` seconds. */
    public function token(
        string $sub,
        string $name,
        ?string $email = null,
        bool $admin = false,
        int $ttl = 3600,
    ): string {
        if ($this->sessionSecret === '') {
            throw new RakitWebSocketException('no session secret configured', 'no_secret');
        }
        if ($sub === '') {
            throw new InvalidArgumentException('sub must not be empty');
        }
        // The claims and their order are those of `rakit websocket:token`.
        $claims = ['sub' => $sub, 'name' => $name];
        if ($email !== null) {
            $claims['email'] = $email;
        }
        if ($admin) {
            $claims['admin'] = true;
        }
        $claims['exp'] = time() + $ttl;
        return $this->sign($claims);
    }

    /**
     * A channel token (SPEC section 15) that lets one user (`userId`, the `sub` of its session)
     * or one connection (`clientId`, the `client_id` of its `welcome`) subscribe to `$channel`
     * in a namespace with `subscribe = "token"`, for `$ttl` seconds. Give exactly one of them:
     *
     *     $token = $ws->channelToken("order.$id", userId: (string) $user->id);
     *     $token = $ws->channelToken('room.7', clientId: $_POST['client_id']);
     */
    public function channelToken(
        string $channel,
        ?string $userId = null,
        ?string $clientId = null,
        int $ttl = 3600,
    ): string {
        if ($this->sessionSecret === '') {
            throw new RakitWebSocketException('no session secret configured', 'no_secret');
        }
        if ($channel === '') {
            throw new InvalidArgumentException('channel must not be empty');
        }
        if (($userId === null) === ($clientId === null) || $userId === '' || $clientId === '') {
            throw new InvalidArgumentException('give exactly one of userId and clientId');
        }
        // The claims and their order are those of `rakit websocket:token --channel`.
        $claims = ['channel' => $channel];
        if ($userId !== null) {
            $claims['sub'] = $userId;
        } else {
            $claims['client'] = $clientId;
        }
        $claims['exp'] = time() + $ttl;
        return $this->sign($claims);
    }

    /** A compact HS256 JWT of `$claims`, signed with the session secret. */
    private function sign(array $claims): string
    {
        $signed = self::base64url(json_encode(['alg' => 'HS256', 'typ' => 'JWT'], self::JSON_FLAGS))
            . '.' . self::base64url(json_encode($claims, self::JSON_FLAGS));
        return $signed . '.' . self::base64url(hash_hmac('sha256', $signed, $this->sessionSecret, true));
    }

    /**
     * Signs a token and sets it as the session cookie (HttpOnly, SameSite=Lax, Secure on https),
     * so the browser's `new WebSocket(...)` to the daemon carries it. Call before any output.
     * Returns the token.
     */
    public function setSessionCookie(
        string $sub,
        string $name,
        ?string $email = null,
        bool $admin = false,
        int $ttl = 3600,
        string $path = '/',
        string $domain = '',
        ?bool $secure = null,
    ): string {
        $token = $this->token($sub, $name, $email, $admin, $ttl);
        if (!setcookie($this->cookieName, $token, $this->sessionCookieOptions($ttl, $path, $domain, $secure))) {
            throw new RakitWebSocketException('cannot set the session cookie (output already sent?)', 'headers_sent');
        }
        return $token;
    }

    /** The setcookie() options setSessionCookie uses (public for tests and custom frameworks). */
    public function sessionCookieOptions(int $ttl = 3600, string $path = '/', string $domain = '', ?bool $secure = null): array
    {
        return [
            'expires' => time() + $ttl,
            'path' => $path,
            'domain' => $domain,
            'secure' => $secure ?? self::requestIsHttps(),
            'httponly' => true,
            'samesite' => 'Lax',
        ];
    }

    /** The cookie name the daemon reads (`[session] cookie`). */
    public function cookieName(): string
    {
        return $this->cookieName;
    }

    // ---- Commands (POST /api/commands) ----------------------------------------------------

    /** Every client receives {"type":"message","message":M}. */
    public function broadcast(mixed $message): void
    {
        $this->command(['command' => 'broadcast', 'message' => $message]);
    }

    /** The subscribers of `$channel` receive {"type":"channel","channel":C,"data":M}. */
    public function toChannel(string $channel, mixed $message): void
    {
        $this->command(['command' => 'broadcast_to_channel', 'channel' => $channel, 'message' => $message]);
    }

    /** Client `$clientId` receives {"type":"private","message":M}; unknown_client (404) if gone. */
    public function privateMessage(string $clientId, mixed $message): void
    {
        $this->command(['command' => 'private_message', 'to' => $clientId, 'message' => $message]);
    }

    /** Closes client `$clientId` with 4000; unknown_client (404) if gone. */
    public function disconnect(string $clientId): void
    {
        $this->command(['command' => 'disconnect', 'client_id' => $clientId]);
    }

    /** Sends a presence message to every client now. */
    public function sendPresence(): void
    {
        $this->command(['command' => 'presence']);
    }

    /**
     * Up to 100 command arrays (as in the WebSocket protocol), carried out in order. Returns one
     * result per command: ['ok' => true] or ['ok' => false, 'code' => ..., 'message' => ...].
     * A failed command does not stop the rest; an invalid batch throws and runs nothing.
     */
    public function batch(array $commands): array
    {
        $response = $this->request('POST', '/api/commands', json_encode(array_values($commands), self::JSON_FLAGS));
        return $response['results'];
    }

    // ---- Queries --------------------------------------------------------------------------

    /** ['count' => N, 'users' => [['id', 'name', 'email', 'connected_at'], ...]], never truncated. */
    public function presence(): array
    {
        return $this->request('GET', '/api/presence');
    }

    /** [['name' => C, 'subscribers' => N], ...]: the channels that have subscribers. */
    public function channels(): array
    {
        return $this->request('GET', '/api/channels')['channels'];
    }

    /** ['name' => C, 'subscribers' => N, 'clients' => [client ids]]. */
    public function channel(string $name): array
    {
        return $this->request('GET', '/api/channels/' . rawurlencode($name));
    }

    // ---- Plumbing -------------------------------------------------------------------------

    private function command(array $command): void
    {
        $this->request('POST', '/api/commands', json_encode($command, self::JSON_FLAGS));
    }

    /** One API call; the decoded JSON answer, or an exception. */
    private function request(string $method, string $path, ?string $body = null): array
    {
        $headers = [
            'Authorization: Bearer ' . $this->apiKey,
            'Accept: application/json',
            'Connection: close',
        ];
        if ($body !== null) {
            $headers[] = 'Content-Type: application/json';
            $headers[] = 'Content-Length: ' . strlen($body);
        }
        $context = stream_context_create(['http' => [
            'method' => $method,
            'header' => implode("\r\n", $headers) . "\r\n",
            'content' => $body ?? '',
            'timeout' => $this->timeout,
            'ignore_errors' => true, // 4xx/5xx bodies carry the error code
            'follow_location' => 0,
            'protocol_version' => 1.1,
        ]]);
        $url = rtrim($this->url, '/') . $path;
        $error = null;
        set_error_handler(static function (int $no, string $message) use (&$error): bool {
            $error = $message;
            return true;
        });
        try {
            $raw = file_get_contents($url, false, $context);
        } finally {
            restore_error_handler();
        }
        $responseHeaders = function_exists('http_get_last_response_headers')
            ? (http_get_last_response_headers() ?? [])
            : ($http_response_header ?? []);
        if ($raw === false || $responseHeaders === []) {
            throw new RakitWebSocketException(
                "cannot reach the daemon at {$url}: " . ($error ?? 'no response'),
                'connection_failed',
            );
        }
        $status = self::statusOf($responseHeaders);
        try {
            $decoded = json_decode($raw, true, 512, JSON_THROW_ON_ERROR);
        } catch (JsonException $e) {
            throw new RakitWebSocketException("HTTP {$status} with a body that is not JSON", 'bad_response', $status, $e);
        }
        if (!is_array($decoded)) {
            throw new RakitWebSocketException("HTTP {$status} with an unexpected body", 'bad_response', $status);
        }
        if ($status < 200 || $status > 299 || ($decoded['ok'] ?? true) === false) {
            throw new RakitWebSocketException(
                (string) ($decoded['message'] ?? "HTTP {$status}"),
                (string) ($decoded['code'] ?? 'http_error'),
                $status,
            );
        }
        return $decoded;
    }

    /** The status of the last response in a header list (redirects are not followed). */
    private static function statusOf(array $headers): int
    {
        $status = 0;
        foreach ($headers as $line) {
            if (preg_match('#^HTTP/\d(?:\.\d)?\s+(\d{3})#', $line, $m)) {
                $status = (int) $m[1];
            }
        }
        return $status;
    }

    private static function base64url(string $bytes): string
    {
        return rtrim(strtr(base64_encode($bytes), '+/', '-_'), '=');
    }

    private static function requestIsHttps(): bool
    {
        $https = $_SERVER['HTTPS'] ?? '';
        if ($https !== '' && strtolower((string) $https) !== 'off') {
            return true;
        }
        return (string) ($_SERVER['SERVER_PORT'] ?? '') === '443'
            || strtolower((string) ($_SERVER['HTTP_X_FORWARDED_PROTO'] ?? '')) === 'https';
    }
}
