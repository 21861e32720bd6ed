<?php
// Prints a session token made by the PHP helper, for tests/php_helper.rs to verify with the
// daemon's own verification. Usage: php token.php SECRET SUB NAME EMAIL|- admin|- TTL
declare(strict_types=1);
require __DIR__ . '/../../clients/php/RakitWebSocket.php';

[, $secret, $sub, $name, $email, $admin, $ttl] = $argv;
$ws = new RakitWebSocket(sessionSecret: $secret);
echo $ws->token($sub, $name, $email === '-' ? null : $email, $admin === 'admin', (int) $ttl), "\n";
