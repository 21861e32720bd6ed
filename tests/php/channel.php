<?php
// Prints a channel token made by the PHP helper's channelToken(), for tests/php_helper.rs to
// subscribe with against a running daemon. Usage: php channel.php SECRET CHANNEL user|client ID TTL
declare(strict_types=1);
require __DIR__ . '/../../clients/php/RakitWebSocket.php';

[, $secret, $channel, $kind, $id, $ttl] = $argv;
$ws = new RakitWebSocket(sessionSecret: $secret);
echo $kind === 'user'
    ? $ws->channelToken($channel, userId: $id, ttl: (int) $ttl)
    : $ws->channelToken($channel, clientId: $id, ttl: (int) $ttl),
    "\n";
