<?php
// Unit-level checks of the PHP helper that need no daemon. Exits non-zero on the first failure.
declare(strict_types=1);
require __DIR__ . '/../../clients/php/RakitWebSocket.php';

function check(bool $ok, string $what): void
{
    if (!$ok) {
        fwrite(STDERR, "FAILED: {$what}\n");
        exit(1);
    }
    echo "ok: {$what}\n";
}

function b64url_decode(string $s): string
{
    return base64_decode(strtr($s, '-_', '+/') . str_repeat('=', (4 - strlen($s) % 4) % 4), true);
}

$ws = new RakitWebSocket(sessionSecret: 'php-secret', cookieName: 'my_cookie');

// Tokens: three base64url segments without padding, HS256, the claims of websocket:token.
$token = $ws->token('42', 'Ann "A" Lee', 'ann@example.com', true, 60);
$parts = explode('.', $token);
check(count($parts) === 3, 'three segments');
check(!preg_match('/[=+\/]/', $token), 'base64url without padding');
check(json_decode(b64url_decode($parts[0]), true) === ['alg' => 'HS256', 'typ' => 'JWT'], 'header');
$claims = json_decode(b64url_decode($parts[1]), true);
check(array_keys($claims) === ['sub', 'name', 'email', 'admin', 'exp'], 'claim order');
check($claims['sub'] === '42' && $claims['name'] === 'Ann "A" Lee', 'sub and name');
check($claims['admin'] === true && $claims['email'] === 'ann@example.com', 'email and admin');
check(abs($claims['exp'] - (time() + 60)) <= 2, 'exp is now + ttl');
$expected = hash_hmac('sha256', $parts[0] . '.' . $parts[1], 'php-secret', true);
check(hash_equals($expected, b64url_decode($parts[2])), 'signature');

$plain = json_decode(b64url_decode(explode('.', $ws->token('7', 'Bo'))[1]), true);
check(array_keys($plain) === ['sub', 'name', 'exp'], 'no email or admin unless given');

try {
    (new RakitWebSocket())->token('1', 'x');
    check(false, 'a token needs a secret');
} catch (RakitWebSocketException $e) {
    check($e->errorCode === 'no_secret', 'a token needs a secret');
}
try {
    $ws->token('', 'x');
    check(false, 'an empty sub is refused');
} catch (InvalidArgumentException) {
    check(true, 'an empty sub is refused');
}

// Channel tokens: the claims of `websocket:token --channel`, exactly one holder.
$channel = explode('.', $ws->channelToken('order.42', userId: '42', ttl: 60));
$claims = json_decode(b64url_decode($channel[1]), true);
check(array_keys($claims) === ['channel', 'sub', 'exp'], 'channel token claims for a user');
check($claims['channel'] === 'order.42' && $claims['sub'] === '42', 'channel and sub');
check(abs($claims['exp'] - (time() + 60)) <= 2, 'channel token exp');
$expected = hash_hmac('sha256', $channel[0] . '.' . $channel[1], 'php-secret', true);
check(hash_equals($expected, b64url_decode($channel[2])), 'channel token signature');
$guest = json_decode(b64url_decode(explode('.', $ws->channelToken('room.1', clientId: 'Ab3dEf9h'))[1]), true);
check(array_keys($guest) === ['channel', 'client', 'exp'] && $guest['client'] === 'Ab3dEf9h', 'channel token for a connection');
foreach ([['c', null, null], ['c', '1', 'Ab3dEf9h'], ['', '1', null], ['c', '', null]] as [$c, $u, $k]) {
    try {
        $ws->channelToken($c, userId: $u, clientId: $k);
        check(false, 'bad channel token arguments are refused');
    } catch (InvalidArgumentException) {
        check(true, 'bad channel token arguments are refused');
    }
}
try {
    (new RakitWebSocket())->channelToken('c', userId: '1');
    check(false, 'no secret, no channel token');
} catch (RakitWebSocketException $e) {
    check($e->errorCode === 'no_secret', 'no secret, no channel token');
}

// The session cookie.
check($ws->cookieName() === 'my_cookie', 'cookie name');
$o = $ws->sessionCookieOptions(120);
check($o['httponly'] === true && $o['samesite'] === 'Lax' && $o['path'] === '/', 'cookie flags');
check($o['secure'] === false, 'not Secure over plain http');
$_SERVER['HTTPS'] = 'on';
check($ws->sessionCookieOptions()['secure'] === true, 'Secure over https');
unset($_SERVER['HTTPS']);
check(abs($o['expires'] - (time() + 120)) <= 2, 'cookie expiry');

// An unreachable daemon is an exception with code connection_failed and status 0.
$server = stream_socket_server('tcp://127.0.0.1:0');
$port = (int) substr(strrchr(stream_socket_get_name($server, false), ':'), 1);
fclose($server);
$down = new RakitWebSocket("http://127.0.0.1:{$port}", apiKey: 'k', timeout: 2.0);
try {
    $down->broadcast('x');
    check(false, 'unreachable daemon throws');
} catch (RakitWebSocketException $e) {
    check($e->errorCode === 'connection_failed' && $e->status === 0, 'unreachable daemon throws');
}
$e = new RakitWebSocketException('m', 'unknown_client', 404);
check($e->getCode() === 404 && $e->getMessage() === 'm', 'exception carries the status');
echo "all ok\n";
