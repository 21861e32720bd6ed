<?php

defined('DS') or exit('No direct access.');

chdir(__DIR__);

$GLOBALS['rakit_paths'] = ['base' => __DIR__ . DS];
foreach (['app' => 'application', 'system' => 'system', 'storage' => 'storage'] as $name => $dir) {
    $GLOBALS['rakit_paths'][$name] = __DIR__ . DS . $dir . DS;
}

function path($path)
{
    return $GLOBALS['rakit_paths'][$path];
}
