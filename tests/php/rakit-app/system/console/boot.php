<?php

namespace System\Console;

defined('DS') or exit('No direct access.');

// The application boots first (its boot.php may register commands)...
require path('app') . 'boot.php';
// ... then the console's own commands, each only if none is registered under its name.
require path('system') . 'console' . DS . 'dependencies.php';

try {
    Console::run(array_slice($arguments, 1));
} catch (\Throwable $e) {
    echo 'Error: ' . $e->getMessage() . PHP_EOL;
    exit(1);
}

echo PHP_EOL;
