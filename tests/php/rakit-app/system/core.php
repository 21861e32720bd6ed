<?php

namespace System;

defined('DS') or exit('No direct access.');

// System\Foo\Bar lives in system/foo/bar.php.
spl_autoload_register(function ($class) {
    if (strncmp($class, 'System\\', 7) === 0) {
        $file = path('system') . strtolower(str_replace('\\', DS, substr($class, 7))) . '.php';
        if (is_file($file)) {
            require $file;
        }
    }
});

// Options (--key=value, --flag) apart from arguments, as the console sees them.
list($arguments, $options) = Console\Console::options($_SERVER['argv']);
$_SERVER['CLI'] = array_change_key_case($options, CASE_UPPER);
