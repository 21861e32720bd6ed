<?php

namespace System\Console\Commands;

defined('DS') or exit('No direct access.');

abstract class Command
{
    protected function info($text, $newline = true)
    {
        return $text . ($newline ? PHP_EOL : '');
    }

    protected function warning($text, $newline = true)
    {
        return $text . ($newline ? PHP_EOL : '');
    }

    protected function error($text, $newline = true)
    {
        return $text . ($newline ? PHP_EOL : '');
    }
}
