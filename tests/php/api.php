<?php
// Drives the PHP helper against a running daemon (tests/php_helper.rs starts it and watches
// the WebSocket side). Usage: php api.php URL API_KEY SUBSCRIBER_ID OTHER_ID
// Prints one JSON object per line: {"step": ..., ...}.
declare(strict_types=1);
require __DIR__ . '/../../clients/php/RakitWebSocket.php';

[, $url, $key, $subscriber, $other] = $argv;
$ws = new RakitWebSocket($url, apiKey: $key);

function out(string $step, array $data = []): void
{
    echo json_encode(['step' => $step] + $data, JSON_UNESCAPED_SLASHES), "\n";
}

function failure(callable $call): array
{
    try {
        $call();
        return ['thrown' => false];
    } catch (RakitWebSocketException $e) {
        return ['thrown' => true, 'code' => $e->errorCode, 'status' => $e->status];
    }
}

out('presence', $ws->presence());
out('channels', ['channels' => $ws->channels()]);
out('channel', $ws->channel('news'));
$ws->broadcast(['hello' => 'world', 'n' => 1.0]);
$ws->toChannel('news', 'extra!');
$ws->privateMessage($subscriber, 'psst');
out('batch', ['results' => $ws->batch([
    ['command' => 'broadcast', 'message' => 'one'],
    ['command' => 'private_message', 'to' => 'Nobody00', 'message' => 'x'],
    ['command' => 'broadcast', 'message' => 'two'],
])]);
out('unknown_client', failure(fn () => $ws->privateMessage('Nobody00', 'x')));
out('invalid_channel', failure(fn () => $ws->toChannel('', 'x')));
out('unauthorized', failure(fn () => (new RakitWebSocket($url, apiKey: 'wrong-key-0123456789'))->presence()));
out('too_many', failure(fn () => $ws->batch(array_fill(0, 101, ['command' => 'presence']))));
$ws->disconnect($other);
out('done');
