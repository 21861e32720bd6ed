<?php

namespace System\Console\Commands;

defined('DS') or exit('No direct access.');

// The framework's own PHP WebSocket server: never what the tests want to see run.
class Websocket extends Command
{
    public function run(array $arguments = [])
    {
        echo "the framework's own websocket server\n";
        exit(3);
    }
}
