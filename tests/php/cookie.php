<?php
// A page for PHP's built-in web server (`php -S 127.0.0.1:0 cookie.php`, tests/php_helper.rs):
// it logs user 42 in with RakitWebSocket::setSessionCookie() and prints the token it set.
// `?late=1` prints something first, so the cookie can no longer be set: the helper must say
// so with the `headers_sent` error code instead of failing silently.
declare(strict_types=1);
require __DIR__ . '/../../clients/php/RakitWebSocket.php';

$ws = new RakitWebSocket(sessionSecret: (string) getenv('RAKIT_TEST_SECRET'));
if (isset($_GET['late'])) {
    echo "output first\n";
    flush(); // the headers go out with it
    try {
        $ws->setSessionCookie('42', 'Ann Lee');
        echo "set\n";
    } catch (RakitWebSocketException $e) {
        echo $e->errorCode, "\n";
    }
    return;
}
echo $ws->setSessionCookie('42', 'Ann Lee', 'ann@example.com', ttl: 600);
